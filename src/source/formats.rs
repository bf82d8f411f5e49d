//! Reading one file into documents, by extension: plain text and Markdown as
//! they are, HTML as its visible text, JSON and JSONL as the text field of
//! each record (each record its own document, so chunks never mix records),
//! CSV/TSV as row records, PDF and Office files through `extract` (a PDF
//! page or a sheet is a document of its own), man pages (`ls.1`) as
//! their text, and a file without an extension as text when its content
//! is text. A gzip-compressed file (`ls.1.gz`, `changelog.gz`: how man
//! pages and Debian's docs ship) is read as what it holds.

use std::io::Read;
use std::sync::Arc;

use serde_json::Value;

use super::FileEntry;
use super::encoding;
use super::extract::{self, Kind, Part};
use super::man;
use super::settings::SourceSettings;
use crate::records::{Document, Skip};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Markdown,
    Html,
    Json,
    JsonLines,
    Csv,
    Tsv,
    /// Parsed in a child process (see `extract`).
    Binary(Kind),
    /// roff source with the man or mdoc macros, by its section number
    /// (`ls.1`, `printf.3p`); read only when its content is one.
    Man,
    /// No extension: text if the content is UTF-8 without NUL bytes.
    Sniffed,
}

impl Format {
    pub fn of(rel: &str) -> Option<Format> {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        if let Some(inner) = gzip_inner(name) {
            // PDF and Office files are read from their path by a child
            // process: compressed ones are not supported.
            return match Format::of(inner) {
                _ if inner.is_empty() => None,
                Some(Format::Binary(_)) => None,
                f => f,
            };
        }
        let Some((stem, ext)) = name.rsplit_once('.') else {
            return Some(Format::Sniffed);
        };
        // Dotfiles (.env, .npmrc) often hold secrets: never sniffed in.
        if stem.is_empty() {
            return None;
        }
        let ext = ext.to_ascii_lowercase();
        Some(match ext.as_str() {
            "txt" | "text" | "rst" | "adoc" | "asciidoc" | "org" => Format::Text,
            "md" | "markdown" | "mdx" => Format::Markdown,
            "html" | "htm" | "xhtml" => Format::Html,
            "json" => Format::Json,
            "jsonl" | "ndjson" => Format::JsonLines,
            "csv" => Format::Csv,
            "tsv" | "tab" => Format::Tsv,
            "pdf" => Format::Binary(Kind::Pdf),
            "docx" | "docm" => Format::Binary(Kind::Docx),
            "odt" => Format::Binary(Kind::Odt),
            "pptx" | "pptm" => Format::Binary(Kind::Pptx),
            "odp" => Format::Binary(Kind::Odp),
            "xlsx" | "xlsm" => Format::Binary(Kind::Xlsx),
            "xlsb" => Format::Binary(Kind::Xlsb),
            "xls" => Format::Binary(Kind::Xls),
            "ods" => Format::Binary(Kind::Ods),
            e if is_man_section(e) => Format::Man,
            // README.Debian, changelog.Debian.amd64, NEWS.old: documents
            // by their name, whatever follows it.
            e if is_doc_name(stem) && !CODE.contains(&e) => Format::Sniffed,
            _ => return None,
        })
    }

    /// The name files are counted under in `plan` and the report.
    pub fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Markdown => "markdown",
            Format::Html => "html",
            Format::Json => "json",
            Format::JsonLines => "jsonl",
            Format::Csv => "csv",
            Format::Tsv => "tsv",
            Format::Binary(Kind::Pdf) => "pdf",
            Format::Binary(Kind::Docx) => "docx",
            Format::Binary(Kind::Odt) => "odt",
            Format::Binary(Kind::Pptx) => "pptx",
            Format::Binary(Kind::Odp) => "odp",
            Format::Binary(Kind::Xlsx) => "xlsx",
            Format::Binary(Kind::Xlsb) => "xlsb",
            Format::Binary(Kind::Xls) => "xls",
            Format::Binary(Kind::Ods) => "ods",
            Format::Man => "man",
            Format::Sniffed => "no extension",
        }
    }
}

/// Extensions of code and page assets, never read as text even when the
/// name says README.
const CODE: &[&str] = &[
    "css", "js", "svg", "xml", "sh", "py", "c", "h", "rs", "go", "map",
];

/// The names project documents go by (`README`, `changelog`, ...), of
/// the part of a file name before its first dot.
fn is_doc_name(stem: &str) -> bool {
    const NAMES: &[&str] = &[
        "readme",
        "changelog",
        "changes",
        "news",
        "history",
        "install",
        "todo",
        "authors",
        "thanks",
        "bugs",
        "faq",
        "copying",
        "copyright",
        "notice",
        "contributing",
    ];
    let first = stem.split('.').next().unwrap_or(stem);
    NAMES.iter().any(|n| first.eq_ignore_ascii_case(n))
}

/// Whether the file's name starts with a document name.
fn doc_named(rel: &str) -> bool {
    is_doc_name(rel.rsplit('/').next().unwrap_or(rel))
}

/// The name inside `name.gz`, if `name` is gzip-compressed.
fn gzip_inner(name: &str) -> Option<&str> {
    let cut = name.len().checked_sub(3)?;
    (name.is_char_boundary(cut) && name[cut..].eq_ignore_ascii_case(".gz")).then(|| &name[..cut])
}

/// A man section as a file extension: a digit and a few letters (`1`,
/// `3p`, `1ssl`, `3const`, `3readline`).
fn is_man_section(ext: &str) -> bool {
    let mut c = ext.chars();
    matches!(c.next(), Some('1'..='9')) && ext.len() <= 12 && c.all(|c| c.is_ascii_lowercase())
}

/// The bytes of a gzip file, decompressed up to `max` bytes (a small file
/// may hold a huge one).
fn gunzip(bytes: &[u8], max: u64) -> Result<Vec<u8>, (&'static str, String)> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .take(max + 1)
        .read_to_end(&mut out)
        .map_err(|e| ("unparsable", format!("gzip: {e}")))?;
    if out.len() as u64 > max {
        return Err((
            "too large",
            format!(
                "decompressed, it is over --max-file-mb {}; raise the limit or split the file",
                max / (1024 * 1024)
            ),
        ));
    }
    Ok(out)
}

/// The name a file is counted under: its format, or "other".
pub fn format_name(rel: &str) -> &'static str {
    Format::of(rel).map_or("other", Format::name)
}

/// The documents of one file.
#[derive(Debug)]
pub struct FileDocs {
    /// At least one, each with non-blank text.
    pub docs: Vec<Document>,
    /// The legacy encoding the text was decoded from, when not UTF-8.
    pub decoded_from: Option<&'static str>,
}

/// Reads `file`.
pub fn read_file(file: &FileEntry, cfg: &SourceSettings) -> Result<FileDocs, Skip> {
    let skip = |reason, detail: String| Skip::new(&file.path, reason, detail);
    let Some(format) = Format::of(&file.rel) else {
        return Err(skip(
            "unsupported type",
            "no reader for this file type".into(),
        ));
    };
    let meta = std::fs::metadata(&file.path).map_err(|e| skip("unreadable", e.to_string()))?;
    if meta.len() > cfg.max_file_bytes {
        return Err(skip(
            "too large",
            format!(
                "{} MiB is over --max-file-mb {}; raise the limit or split the file",
                meta.len() / (1024 * 1024),
                cfg.max_file_bytes / (1024 * 1024)
            ),
        ));
    }
    if meta.len() == 0 {
        return Err(skip("empty", "file is empty".into()));
    }
    if let Format::Binary(kind) = format {
        let parts = extract::extract(&file.path, kind, cfg.extract_timeout)
            .map_err(|f| skip(f.reason.label(), f.detail))?;
        return non_empty(file, format, parts_docs(file, parts, cfg.whole_files), None);
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // `take` guards against a file that grew after the size check.
    std::fs::File::open(&file.path)
        .and_then(|f| f.take(cfg.max_file_bytes + 1).read_to_end(&mut bytes))
        .map_err(|e| skip("unreadable", e.to_string()))?;
    if bytes.len() as u64 > cfg.max_file_bytes {
        return Err(skip(
            "too large",
            "file grew past --max-file-mb while being read".into(),
        ));
    }
    if gzip_inner(&file.rel).is_some() {
        bytes = gunzip(&bytes, cfg.max_file_bytes).map_err(|(r, d)| skip(r, d))?;
    }
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(skip(
            "empty",
            if bytes.is_empty() {
                "file is empty"
            } else {
                "only whitespace"
            }
            .into(),
        ));
    }
    let hints = encoding::Hints {
        forced: cfg.encoding,
        html: format == Format::Html,
        sniffed: format == Format::Sniffed,
    };
    let decoded = encoding::decode(bytes, hints).map_err(|e| skip(e.reason, e.detail))?;
    let (text, from) = (decoded.text, decoded.from);
    let one = |text: String| whole_file(file, text);
    let docs = match format {
        Format::Text | Format::Markdown | Format::Sniffed => vec![one(text)],
        Format::Html => vec![one(html_text(&text).map_err(|e| skip("unparsable", e))?)],
        Format::Man if man::looks_like_man(&text) => {
            vec![one(man::text(&text).map_err(|e| skip("empty", e))?)]
        }
        // changelog.1 (an older changelog) is text; app.log.1 is a log.
        Format::Man if doc_named(&file.rel) => vec![one(text)],
        Format::Man => {
            return Err(skip(
                "unsupported type",
                "named like a man page, but holds no roff macros (.TH, .SH, .Dd)".into(),
            ));
        }
        Format::Json => {
            json_docs(file, &text, &cfg.json_text_field).map_err(|e| skip("unparsable", e))?
        }
        Format::JsonLines => {
            jsonl_docs(file, &text, &cfg.json_text_field).map_err(|e| skip("unparsable", e))?
        }
        Format::Csv | Format::Tsv => {
            let delimiter = if format == Format::Tsv { b'\t' } else { b',' };
            let parts = extract::csv_parts(&text, delimiter)
                .map_err(|f| skip(f.reason.label(), f.detail))?;
            parts_docs(file, parts, cfg.whole_files)
        }
        Format::Binary(_) => Vec::new(),
    };
    non_empty(file, format, docs, from)
}

fn non_empty(
    file: &FileEntry,
    format: Format,
    docs: Vec<Document>,
    decoded_from: Option<&'static str>,
) -> Result<FileDocs, Skip> {
    let docs: Vec<Document> = docs
        .into_iter()
        .filter(|d| !d.text.trim().is_empty())
        .collect();
    if docs.is_empty() {
        let why = match format {
            Format::Html => "no visible text",
            Format::Json | Format::JsonLines => "no record has text",
            Format::Binary(_) | Format::Csv | Format::Tsv => "no text",
            _ => "only whitespace",
        };
        return Err(Skip::new(&file.path, "empty", why));
    }
    Ok(FileDocs { docs, decoded_from })
}

/// The file as one document, named by its path.
fn whole_file(file: &FileEntry, text: String) -> Document {
    Document {
        key: file.rel.clone(),
        source: file.rel.clone(),
        file: Arc::from(file.rel.as_str()),
        text,
        page: None,
        records: false,
    }
}

/// Extracted parts as documents: a labelled part (a PDF page, a sheet) is
/// `path#label`, its own document with its own ids; with `whole` the parts
/// are joined into one document of the file.
fn parts_docs(file: &FileEntry, parts: Vec<Part>, whole: bool) -> Vec<Document> {
    if whole && !parts.is_empty() {
        let text = parts
            .iter()
            .map(|p| p.text.trim_end())
            .collect::<Vec<_>>()
            .join("\n\n");
        return vec![whole_file(file, text)];
    }
    parts
        .into_iter()
        .map(|p| {
            let key = match &p.label {
                Some(l) => format!("{}#{l}", file.rel),
                None => file.rel.clone(),
            };
            Document {
                key: key.clone(),
                source: key,
                file: Arc::from(file.rel.as_str()),
                text: p.text,
                page: p.page,
                records: p.records,
            }
        })
        .collect()
}

/// Visible text only: html2text drops script, style and head content. Raw
/// mode puts table cells on lines of their own instead of drawing padded
/// grids, which would send thousands of spaces and box-drawing characters
/// to a paid endpoint.
fn html_text(html: &str) -> Result<String, String> {
    let text = html2text::config::plain_no_decorate()
        .raw_mode(true)
        .link_footnotes(false)
        .string_from_read(html.as_bytes(), 100_000)
        .map_err(|e| format!("HTML: {e}"))?;
    Ok(tidy_lines(&text))
}

/// Trailing spaces cut, runs of blank lines folded into one.
fn tidy_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn record_text(v: &Value, field: &str) -> Option<String> {
    let pick = |name: &str| v.get(name).and_then(Value::as_str).map(str::to_string);
    // PostgreSQL text cannot hold NUL; JSON strings can.
    pick(field)
        .or_else(|| pick("text"))
        .map(|s| s.replace('\0', ""))
}

fn json_docs(file: &FileEntry, text: &str, field: &str) -> Result<Vec<Document>, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("JSON: {e}"))?;
    match v {
        Value::Array(items) => Ok(items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                record_text(item, field).map(|t| record(file, &i.to_string(), t))
            })
            .collect()),
        Value::Object(_) => match record_text(&v, field) {
            Some(t) => Ok(vec![whole_file(file, t)]),
            None => Err(format!("no string field {field:?} or \"text\"")),
        },
        _ => Err("top level is neither an object nor an array".into()),
    }
}

fn jsonl_docs(file: &FileEntry, text: &str, field: &str) -> Result<Vec<Document>, String> {
    let mut docs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value =
            serde_json::from_str(line).map_err(|e| format!("JSON on line {}: {e}", i + 1))?;
        if let Some(t) = record_text(&v, field) {
            docs.push(record(file, &(i + 1).to_string(), t));
        }
    }
    Ok(docs)
}

/// A JSON record as a document: `path#N` (array index, or line number for JSONL).
fn record(file: &FileEntry, n: &str, text: String) -> Document {
    let key = format!("{}#{n}", file.rel);
    Document {
        key: key.clone(),
        source: key,
        file: Arc::from(file.rel.as_str()),
        text,
        page: None,
        records: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_keeps_visible_text_only() {
        let t = html_text(
            "<html><head><title>T</title><style>.x{color:red}</style><script>var secret=1;</script></head>\
             <body><h1>Heading</h1><p>Hello <b>world</b></p><script>alert(2)</script></body></html>",
        )
        .unwrap();
        assert!(t.contains("Heading") && t.contains("Hello world"), "{t}");
        assert!(
            !t.contains("secret") && !t.contains("alert") && !t.contains("color"),
            "{t}"
        );
        assert!(!t.contains('<'), "{t}");
    }

    #[test]
    fn html_tables_are_not_padded_grids() {
        let t = html_text(
            "<table><tr><th>Operator</th><th>Meaning</th></tr>\
             <tr><td>|</td><td>Bitwise OR, a long description of what this does</td></tr></table>",
        )
        .unwrap();
        assert!(t.contains("Operator") && t.contains("Bitwise OR"), "{t}");
        assert!(!t.contains("   ") && !t.contains('─'), "{t:?}");
    }

    #[test]
    fn formats_by_extension() {
        assert_eq!(Format::of("a/B.MD"), Some(Format::Markdown));
        assert_eq!(Format::of("x.jsonl"), Some(Format::JsonLines));
        assert_eq!(Format::of("x.png"), None);
        assert_eq!(Format::of("docs/README"), Some(Format::Sniffed));
        assert_eq!(Format::of("a.b/LICENSE"), Some(Format::Sniffed));
        assert_eq!(Format::of("app/.env"), None);
        assert_eq!(Format::of("Q3.PDF"), Some(Format::Binary(Kind::Pdf)));
        assert_eq!(Format::of("t.tsv"), Some(Format::Tsv));
        assert_eq!(Format::of("man/man1/ls.1.gz"), Some(Format::Man));
        assert_eq!(Format::of("printf.3p"), Some(Format::Man));
        assert_eq!(Format::of("perlre.3perl.GZ"), Some(Format::Man));
        assert_eq!(Format::of("man3/readline.3readline.gz"), Some(Format::Man));
        assert_eq!(Format::of("notes.2024"), None);
        assert_eq!(Format::of("doc/changelog.gz"), Some(Format::Sniffed));
        assert_eq!(Format::of("a.md.gz"), Some(Format::Markdown));
        assert_eq!(
            Format::of("a.pdf.gz"),
            None,
            "read from a path by a child process"
        );
        assert_eq!(Format::of("a.tar.gz"), None);
        assert_eq!(Format::of(".gz"), None);
        assert_eq!(Format::of(".env.gz"), None);
        assert_eq!(
            Format::of("doc/x/changelog.Debian.gz"),
            Some(Format::Sniffed)
        );
        assert_eq!(Format::of("README.Debian"), Some(Format::Sniffed));
        assert_eq!(
            Format::of("changelog.Debian.amd64.gz"),
            Some(Format::Sniffed)
        );
        assert_eq!(Format::of("readme.css"), None);
        assert_eq!(Format::of("theme.css"), None);
    }

    fn entry(dir: &std::path::Path, name: &str, bytes: &[u8]) -> FileEntry {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        FileEntry {
            path,
            rel: name.to_string(),
        }
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn compressed_man_pages_and_texts_are_read_and_bad_ones_skipped_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SourceSettings::for_one_file(std::time::Duration::from_secs(30));
        let page = b".TH GZIP 1\n.SH NAME\ngzip \\- compress files\n";
        let docs = read_file(&entry(dir.path(), "gzip.1.gz", &gz(page)), &cfg).unwrap();
        assert_eq!(
            docs.docs[0].text,
            "GZIP(1)\n\nNAME\n\ngzip - compress files"
        );
        let docs = read_file(
            &entry(dir.path(), "changelog.gz", &gz(b"v2: faster\n")),
            &cfg,
        )
        .unwrap();
        assert_eq!(docs.docs[0].text.trim(), "v2: faster");
        let bad = read_file(&entry(dir.path(), "x.1.gz", b"not gzip at all"), &cfg).unwrap_err();
        assert_eq!(bad.reason, "unparsable");
        assert!(bad.path.ends_with("x.1.gz"), "{bad:?}");
        let log = read_file(&entry(dir.path(), "app.log.1", b"12:00 started\n"), &cfg).unwrap_err();
        assert_eq!(log.reason, "unsupported type");
        let old = read_file(
            &entry(dir.path(), "changelog.1.gz", &gz(b"v1: first\n")),
            &cfg,
        )
        .unwrap();
        assert_eq!(old.docs[0].text.trim(), "v1: first");
        let link = read_file(
            &entry(dir.path(), "zcat.1.gz", &gz(b".so man1/gzip.1\n")),
            &cfg,
        )
        .unwrap_err();
        assert!(link.detail.contains("man1/gzip.1"), "{link:?}");
        // A bomb: 8 MiB in a few KiB, over a 1 MiB limit.
        let small = SourceSettings {
            max_file_bytes: 1024 * 1024,
            ..SourceSettings::for_one_file(std::time::Duration::from_secs(30))
        };
        let bomb = gz(&vec![b'a'; 8 * 1024 * 1024]);
        let e = read_file(&entry(dir.path(), "big.txt.gz", &bomb), &small).unwrap_err();
        assert_eq!(e.reason, "too large");
    }
}
