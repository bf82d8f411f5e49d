//! Documents as users have them (fixtures/formats: PDF, DOCX, ODT, PPTX,
//! XLSX, CSV, TSV, Markdown, HTML, files without an extension, and broken,
//! encrypted and scanned ones), loaded by the real binary into a real
//! pgvector table (and Qdrant, when there is one): every readable document
//! is stored and searchable, with PDF pages cited, and every unreadable one
//! is reported with its reason without stopping the run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::common::*;
use embedding_test_server::vector_for;

const DIM: usize = 16;

fn formats() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/formats")
}

/// (source, page, content, embedding) of every row, sorted by source and chunk.
type Row = (String, Option<i32>, String, Vec<f32>);

fn rows(db: &Db, table: &str) -> Vec<Row> {
    db.query(
        &format!(
            "SELECT source, page, content, embedding FROM \"{table}\" ORDER BY source, chunk_index"
        ),
        &[],
    )
    .iter()
    .map(|r| {
        (
            r.get(0),
            r.get(1),
            r.get(2),
            r.get::<_, pgvector::Vector>(3).to_vec(),
        )
    })
    .collect()
}

/// Where a chunk is from: (source, page).
type Place = (String, Option<i32>);

/// The rows whose text holds `needle`.
fn holders(rows: &[Row], needle: &str) -> Vec<Place> {
    rows.iter()
        .filter(|r| r.2.contains(needle))
        .map(|r| (r.0.clone(), r.1))
        .collect()
}

fn skipped(report: &serde_json::Value) -> BTreeMap<String, String> {
    report["skipped"]
        .as_array()
        .expect("skipped list")
        .iter()
        .map(|s| {
            let path = s["path"].as_str().unwrap_or_default();
            let name = path.rsplit('/').next().unwrap_or(path).to_string();
            (name, s["reason"].as_str().unwrap_or_default().to_string())
        })
        .collect()
}

#[test]
fn a_mixed_folder_loads_every_readable_document_and_reports_the_rest() {
    let Some(pg) = pg_url("a_mixed_folder_loads_every_readable_document") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", &DIM.to_string()]);
    let table = unique_table("formats");
    let report = std::env::temp_dir().join(format!("{table}.json"));
    let r = run(load_cmd(&server, &pg, &table, DIM)
        .arg(formats())
        .arg("--report")
        .arg(&report));
    // Skipped files are reported, not failures: everything loadable was written.
    assert_eq!(r.code, 0, "{}", r.all_output());
    let rep = read_report(&report);
    let db = Db::connect(&pg);
    let rows = rows(&db, &table);

    // Each known sentence in exactly one chunk, of the right file and page.
    let page = |s: &str, n: i32| vec![(s.to_string(), Some(n))];
    let whole = |s: &str| vec![(s.to_string(), None)];
    let cases: Vec<(&str, Vec<Place>)> = vec![
        (
            "This manual describes the tenant isolation model.",
            page("manual.pdf#page=1", 1),
        ),
        (
            "The harbor pilots follow quartz lanterns after midnight.",
            page("manual.pdf#page=2", 2),
        ),
        (
            "Invoices are archived for seven years in the cold storage tier.",
            page("manual.pdf#page=3", 3),
        ),
        ("向量数据库按租户隔离存储。", page("cjk.pdf#page=1", 1)),
        ("每个租户的数据互不可见。", page("cjk.pdf#page=2", 2)),
        (
            "Owner passwords restrict printing but not reading.",
            page("owner-only.pdf#page=1", 1),
        ),
        (
            "New engineers shadow the on-call rotation for two weeks.",
            vec![
                ("handbook.docx".into(), None),
                ("handbook.odt".into(), None),
            ],
        ),
        // A table row stays one line: the cell next to its row's cells.
        (
            "ledger-sync | Team Falcon | runbooks/ledger-sync.md",
            vec![
                ("handbook.docx".into(), None),
                ("handbook.odt".into(), None),
            ],
        ),
        (
            "Latency fell by forty percent after the cache rollout.",
            whole("deck.pptx"),
        ),
        (
            "Speaker note: mention the cache hit ratio.",
            whole("deck.pptx"),
        ),
        (
            "Part: flux capacitor; Supplier: Brown Labs; Stock: 3; Price: 88.5",
            whole("inventory.xlsx#Parts"),
        ),
        // A date cell reads as a date, not Excel's day number.
        ("Supplier: 2024-03-15", whole("inventory.xlsx#Parts")),
        (
            "Supplier: Brown Labs; Country: United States",
            whole("inventory.xlsx#Suppliers"),
        ),
        // A quoted CSV field with a comma and a newline stays in its row.
        (
            "customer: Ada Lovelace; item: analytical engine; notes: fragile, ship in two crates call",
            whole("orders.csv"),
        ),
        ("description: stainless steel bolts", whole("orders.tsv")),
        (
            "Run the loader with the production profile only after the dry run.",
            whole("README"),
        ),
        (
            "Markdown notes still load next to the office files.",
            whole("notes.md"),
        ),
        ("HTML pages keep loading as before.", whole("page.html")),
    ];
    for (needle, want) in &cases {
        assert_eq!(&holders(&rows, needle), want, "{needle}");
    }
    // Slides in order, and nothing of the masters' placeholder texts.
    let deck = &rows.iter().find(|r| r.0 == "deck.pptx").expect("deck").2;
    let at = |s: &str| deck.find(s).unwrap_or(usize::MAX);
    assert!(at("Quarterly review") < at("Latency fell") && at("Latency fell") < at("Next quarter"));
    assert!(!deck.contains("Click to"), "{deck}");
    assert!(rows.iter().any(|r| r.0 == "CHANGELOG"));

    // Every stored vector belongs to its stored text.
    for (source, _, content, v) in &rows {
        assert_eq!(v, &vector_for(content, DIM), "{source}");
    }

    let skips = skipped(&rep);
    let want: BTreeMap<String, String> = [
        ("encrypted.pdf", "encrypted"),
        ("scanned.pdf", "no text layer"),
        ("broken.pdf", "unparsable"),
        ("broken.docx", "unparsable"),
        ("broken.pptx", "unparsable"),
        ("broken.xlsx", "unparsable"),
        ("logo", "binary"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(skips, want);
    let by_format = &rep["files_by_format"];
    for (f, n) in [
        ("pdf", 6),
        ("docx", 2),
        ("odt", 1),
        ("pptx", 2),
        ("xlsx", 2),
        ("csv", 1),
        ("tsv", 1),
        ("no extension", 3),
        ("markdown", 1),
        ("html", 1),
    ] {
        assert_eq!(by_format[f], n, "{f}: {by_format}");
    }
    assert_eq!(rep["files_skipped"]["unparsable"], 4);
    assert!(r.stdout.contains("formats: csv 1, docx 2"), "{}", r.stdout);

    // Searchable: a question finds its page.
    let s = run(vecload()
        .arg("search")
        .arg("The harbor pilots follow quartz lanterns after midnight.")
        .args(["--embed-url", &server.url, "--embed-model", "test-model"])
        .args([
            "--embed-dim",
            &DIM.to_string(),
            "--pg-url",
            &pg,
            "--table",
            &table,
        ])
        .args(["-k", "1"]));
    assert_eq!(s.code, 0, "{}", s.all_output());
    assert!(s.stdout.contains("manual.pdf#page=2"), "{}", s.stdout);

    // `plan` counts the same formats and reasons, without embedding.
    let before = server.requests();
    let p = run(vecload()
        .arg("plan")
        .arg(formats())
        .args(["--embed-url", &server.url, "--embed-model", "test-model"])
        .args([
            "--embed-dim",
            &DIM.to_string(),
            "--pg-url",
            &pg,
            "--table",
            &table,
        ])
        .arg("--json"));
    let plan: serde_json::Value = serde_json::from_str(&p.stdout).expect("plan JSON");
    assert_eq!(plan["files_by_format"], rep["files_by_format"]);
    assert_eq!(plan["files_skipped"], rep["files_skipped"]);
    assert_eq!(server.requests(), before);
    let _ = std::fs::remove_file(&report);
}

/// A minimal PDF with one page; `page_extra` goes into the page dictionary.
fn pdf(page_extra: &str, content: &[u8]) -> Vec<u8> {
    let objs: Vec<Vec<u8>> = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        format!("<< /Type /Page /Parent 2 0 R {page_extra} /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>").into_bytes(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec(),
        [
            format!("<< /Length {} >>\nstream\n", content.len()).as_bytes(),
            content,
            b"\nendstream",
        ]
        .concat(),
    ];
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objs.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(o);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objs.len() + 1).as_bytes());
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objs.len() + 1
        )
        .as_bytes(),
    );
    out
}

const MEDIA_BOX: &str = "/MediaBox [0 0 612 792]";

#[test]
fn a_parser_that_panics_or_runs_too_long_costs_only_its_file() {
    let Some(pg) = pg_url("a_parser_that_panics_or_runs_too_long") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("fine.pdf"),
        pdf(
            MEDIA_BOX,
            b"BT /F1 12 Tf 72 712 Td (A fine page next to bad ones.) Tj ET",
        ),
    )
    .expect("write");
    // No MediaBox: pdf-extract panics (`expect("MediaBox")`).
    std::fs::write(
        dir.path().join("panics.pdf"),
        pdf("", b"BT /F1 12 Tf 72 712 Td (never read) Tj ET"),
    )
    .expect("write");
    // A million text operators: seconds of work, far over a 1 s limit.
    let mut slow = b"BT /F1 12 Tf 72 712 Td ".to_vec();
    for _ in 0..1_000_000 {
        slow.extend_from_slice(b"(abcdefghij) Tj 1 0 Td ");
    }
    slow.extend_from_slice(b"ET");
    std::fs::write(dir.path().join("slow.pdf"), pdf(MEDIA_BOX, &slow)).expect("write");
    std::fs::write(dir.path().join("notes.txt"), "Plain text loads as always.").expect("write");

    let server = EmbedServer::start(&["--dim", &DIM.to_string()]);
    let table = unique_table("formats_bad");
    let report = dir.path().join("report.json");
    let started = std::time::Instant::now();
    let r = run(load_cmd(&server, &pg, &table, DIM)
        .arg(dir.path())
        .args(["--exclude", "report.json", "--extract-timeout", "1"])
        .arg("--report")
        .arg(&report));
    assert_eq!(r.code, 0, "{}", r.all_output());
    let rep = read_report(&report);
    let skips = skipped(&rep);
    assert_eq!(
        skips.get("panics.pdf").map(String::as_str),
        Some("parser panicked")
    );
    assert_eq!(skips.get("slow.pdf").map(String::as_str), Some("timed out"));
    assert_eq!(skips.len(), 2, "{skips:?}");
    let out = r.all_output();
    assert!(
        out.contains("slow.pdf (timed out: extraction took longer than --extract-timeout 1s"),
        "{out}"
    );
    assert!(
        out.contains("panics.pdf (parser panicked:") && out.contains("MediaBox"),
        "{out}"
    );
    // The stopped parser did not hold the run: the slow file alone takes
    // many seconds to extract.
    eprintln!("run took {:?}", started.elapsed());
    let db = Db::connect(&pg);
    let rows = rows(&db, &table);
    let sources: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(sources, ["fine.pdf#page=1", "notes.txt"]);
    assert!(rows[0].2.contains("A fine page next to bad ones."));

    // A bad --extract-timeout is refused before anything is read or sent.
    let bad = run(load_cmd(&server, &pg, &table, DIM)
        .arg(dir.path())
        .args(["--extract-timeout", "0"]));
    assert_eq!(bad.code, 2, "{}", bad.all_output());
    assert!(bad.stderr.contains("--extract-timeout"), "{}", bad.stderr);
}

#[test]
fn pdf_pages_are_in_the_qdrant_payload() {
    let Some(q) = crate::common::qdrant::qdrant("pdf_pages_are_in_the_qdrant_payload") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(formats().join("manual.pdf"), dir.path().join("manual.pdf")).expect("copy");
    let server = EmbedServer::start(&["--dim", &DIM.to_string()]);
    let collection = unique_table("formats_q");
    let r = run(qdrant_load_cmd(&server, q, &collection, DIM).arg(dir.path()));
    assert_eq!(r.code, 0, "{}", r.all_output());
    let points = q.client().raw_points(&collection);
    let mut pages: Vec<(i64, String)> = points
        .values()
        .map(|(payload, _)| {
            (
                payload["page"].as_i64().expect("page in payload"),
                payload["source"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    pages.sort();
    assert_eq!(
        pages,
        [
            (1, "manual.pdf#page=1".to_string()),
            (2, "manual.pdf#page=2".to_string()),
            (3, "manual.pdf#page=3".to_string())
        ]
    );
}

fn encodings() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/encodings")
}

/// Issue 16: text files in legacy encodings (made by iconv from the UTF-8
/// sources in fixtures/encodings-src) are decoded and stored with their
/// original characters; the report says which file came from which
/// encoding; a file too short to tell is skipped as `unknown encoding`,
/// never stored as mojibake.
#[test]
fn legacy_encodings_load_with_their_original_characters() {
    let Some(pg) = pg_url("legacy_encodings") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", &DIM.to_string()]);
    let table = unique_table("enc");
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let r = run(load_cmd(&server, &pg, &table, DIM)
        .arg(encodings())
        .arg("--report")
        .arg(&report));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let rep = read_report(&report);
    let decoded: BTreeMap<String, String> = rep["decoded"]
        .as_array()
        .expect("decoded list")
        .iter()
        .map(|d| {
            (
                d["path"].as_str().unwrap().to_string(),
                d["encoding"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: BTreeMap<String, String> = [
        ("big5-handbook.txt", "Big5"),
        ("gb18030-notes.txt", "GBK"),
        ("gbk-policy.txt", "GBK"),
        ("latin1.txt", "windows-1252"),
        ("shiftjis-runbook.txt", "Shift_JIS"),
        ("utf16-memo.txt", "UTF-16LE"),
        ("windows1252-export.csv", "windows-1252"),
    ]
    .iter()
    .map(|(p, e)| (p.to_string(), e.to_string()))
    .collect();
    assert_eq!(decoded, want);
    assert_eq!(rep["files_decoded"]["GBK"], 2);
    assert!(
        r.stdout.contains("decoded from legacy encodings"),
        "{}",
        r.stdout
    );
    let skips = skipped(&rep);
    let title = skips
        .iter()
        .find(|(p, _)| p.ends_with("gbk-title.txt"))
        .map(|(_, reason)| reason.as_str());
    assert_eq!(title, Some("unknown encoding"), "{skips:?}");

    let db = Db::connect(&pg);
    let stored = rows(&db, &table);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/encodings-src");
    for name in [
        "big5-handbook.txt",
        "gb18030-notes.txt",
        "gbk-policy.txt",
        "latin1.txt",
        "shiftjis-runbook.txt",
        "utf16-memo.txt",
    ] {
        let original = std::fs::read_to_string(src.join(name)).unwrap();
        let row = stored
            .iter()
            .find(|r| r.0 == name)
            .unwrap_or_else(|| panic!("{name} stored"));
        assert_eq!(row.2, original.trim(), "{name}: the original characters");
        assert_eq!(row.3, vector_for(&row.2, DIM), "{name}: its own vector");
    }
    // The CSV is read as row records, its accents and guillemets intact.
    let csv: Vec<&Row> = stored
        .iter()
        .filter(|r| r.0 == "windows1252-export.csv")
        .collect();
    let text: String = csv.iter().map(|r| r.2.as_str()).collect();
    for needle in [
        "Société Générale",
        "Zürich",
        "« très satisfait »",
        "contrat renouvelé – échéance",
    ] {
        assert!(text.contains(needle), "{needle:?} in {text:?}");
    }
    assert!(
        stored.iter().all(|r| !r.2.contains('\u{fffd}')),
        "no replacement characters stored"
    );
}

/// Copies `n` files of `from` (in name order) under `to`, keeping their
/// folders: real pages as the system has them.
fn copy_some(from: &Path, to: &Path, n: usize) -> Vec<String> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(from)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut out = Vec::new();
    for p in names.into_iter().take(n) {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        std::fs::create_dir_all(to).unwrap();
        std::fs::copy(&p, to.join(&name)).unwrap();
        out.push(name);
    }
    out
}

#[test]
fn the_systems_man_pages_and_compressed_docs_load_as_their_text() {
    let man = Path::new("/usr/share/man");
    if !man.join("man1/ls.1.gz").exists() {
        eprintln!("=== SKIPPED: no man pages under /usr/share/man (ls.1.gz) ===");
        return;
    }
    let Some(pg) = pg_url("the_systems_man_pages_load_as_their_text") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path();
    // Real pages: the first of section 1 and 8 in English, and the
    // translated ones (Chinese, Swedish) where the system has them.
    let mut pages = copy_some(&man.join("man1"), &docs.join("man1"), 60);
    pages.extend(copy_some(&man.join("man8"), &docs.join("man8"), 20));
    pages.extend(copy_some(
        &man.join("zh_CN/man1"),
        &docs.join("zh_CN/man1"),
        10,
    ));
    pages.extend(copy_some(&man.join("sv/man1"), &docs.join("sv/man1"), 10));
    std::fs::copy(man.join("man1/ls.1.gz"), docs.join("man1/ls.1.gz")).unwrap();
    // A page that is only a link, and Debian's compressed changelog.
    let gz = |text: &str| {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(text.as_bytes()).unwrap();
        e.finish().unwrap()
    };
    std::fs::write(docs.join("man1/zz-link.1.gz"), gz(".so man1/ls.1\n")).unwrap();
    std::fs::write(
        docs.join("changelog.Debian.gz"),
        gz("vecload (1.0-1) unstable; urgency=medium\n\n  * Compressed changelogs are read.\n"),
    )
    .unwrap();

    let server = EmbedServer::start(&["--dim", &DIM.to_string()]);
    let table = unique_table("manpages");
    let report = docs.join("report.json");
    let r = run(load_cmd(&server, &pg, &table, DIM)
        .arg(docs)
        .arg("--report")
        .arg(&report));
    assert_eq!(r.code, 0, "{}", r.all_output());
    let rep = read_report(&report);
    let rows = rows(&Db::connect(&pg), &table);

    let ls: String = rows
        .iter()
        .filter(|r| r.0 == "man1/ls.1.gz")
        .map(|r| r.2.as_str())
        .collect();
    assert!(ls.contains("ls - list directory contents"), "{ls}");
    assert!(ls.contains("-a, --all"), "{ls}");
    // Pages about roff itself show its syntax as their text.
    let about_roff = |s: &str| {
        let name = s.rsplit('/').next().unwrap_or(s);
        let name = name.split('.').next().unwrap_or(name);
        [
            "lexgrog", "man", "mandoc", "manpath", "groff", "troff", "nroff", "eqn", "tbl", "pic",
            "grops", "preconv", "soelim", "zsoelim", "roff",
        ]
        .iter()
        .any(|n| name == *n || name.starts_with("groff"))
    };
    for (source, _, content, v) in &rows {
        assert_eq!(v, &vector_for(content, DIM), "{source}");
        if about_roff(source) {
            continue;
        }
        // No typesetting reaches the endpoint.
        for roff in ["\\fB", "\\fI", "\\fR", "\\fP", "\\(em", "\\-"] {
            assert!(!content.contains(roff), "{roff} in {source}:\n{content}");
        }
        for line in content.lines() {
            for req in [".TH ", ".SH ", ".PP", ".TP", ".B ", ".IP "] {
                assert!(!line.starts_with(req), "{req} in {source}:\n{line}");
            }
        }
    }
    if docs.join("zh_CN/man1").exists() {
        assert!(
            rows.iter().any(|r| r.0.starts_with("zh_CN/")
                && r.2.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))),
            "Chinese pages keep their text"
        );
    }
    assert!(
        rows.iter().any(
            |r| r.0 == "changelog.Debian.gz" && r.2.contains("Compressed changelogs are read.")
        ),
    );
    let skips = skipped(&rep);
    assert_eq!(
        skips.get("zz-link.1.gz").map(String::as_str),
        Some("empty"),
        "{skips:?}"
    );
    // Every real page is either stored or skipped with a reason (some
    // are links too), and nothing else was skipped.
    let stored: std::collections::BTreeSet<&str> = rows
        .iter()
        .map(|r| r.0.rsplit('/').next().unwrap_or(&r.0))
        .collect();
    for p in &pages {
        assert!(
            stored.contains(p.as_str()) || skips.get(p).is_some_and(|r| r == "empty"),
            "{p}: neither stored nor skipped as a link ({skips:?})"
        );
    }
    assert!(
        rep["files_by_format"]["man"].as_u64().unwrap_or(0) >= pages.len() as u64 - 1,
        "{}",
        rep["files_by_format"]
    );
}
