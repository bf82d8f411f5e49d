//! Inputs that cannot be loaded are reported with their path and reason,
//! counted, and never stop the run.

use crate::common::*;

#[test]
fn bad_inputs_are_reported_counted_and_the_rest_loads() {
    let Some(pg) = pg_url("bad_inputs") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", "16"]);
    let table = unique_table("bad");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for entry in std::fs::read_dir(fixtures().join("bad")).unwrap() {
        let entry = entry.unwrap();
        let ft = entry.file_type().unwrap();
        if ft.is_file() {
            std::fs::copy(entry.path(), root.join(entry.file_name())).unwrap();
        }
    }
    std::os::unix::fs::symlink(root.join("missing-target.md"), root.join("dangling.md")).unwrap();
    std::fs::create_dir(root.join("loop")).unwrap();
    std::os::unix::fs::symlink(root, root.join("loop/back-to-root")).unwrap();
    // 2 MiB of text against a 1 MiB limit.
    std::fs::write(root.join("huge.txt"), "large file line\n".repeat(131_072)).unwrap();
    std::fs::write(
        root.join("good.md"),
        "The one good document in this folder.",
    )
    .unwrap();
    let report = root.join("../bad-report.json");
    let r = run(load_cmd(&server, &pg, &table, 16)
        .arg(root)
        .args(["--max-file-mb", "1", "--report"])
        .arg(&report));
    assert_eq!(
        r.code, 0,
        "skipped files are not failures: everything loadable was loaded"
    );
    let rep = read_report(&report);
    let by_reason = &rep["files_skipped"];
    for (reason, n) in [
        ("binary", 1),
        ("unknown encoding", 1),
        ("empty", 3),
        ("unsupported type", 1),
        ("unparsable", 1),
        ("broken symlink", 1),
        ("symlink loop", 1),
        ("too large", 1),
    ] {
        assert_eq!(by_reason[reason].as_u64(), Some(n), "{reason}: {by_reason}");
    }
    let listed: Vec<(String, String)> = rep["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["path"].as_str().unwrap().to_string(),
                s["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (file, reason) in [
        ("binary.txt", "binary"),
        ("unknown-encoding.txt", "unknown encoding"),
        ("huge.txt", "too large"),
        ("dangling.md", "broken symlink"),
    ] {
        assert!(
            listed.iter().any(|(p, r)| p.ends_with(file) && r == reason),
            "{file} listed as {reason}: {listed:?}"
        );
    }
    assert!(
        r.stdout.contains("huge.txt") && r.stdout.contains("--max-file-mb"),
        "summary names the file and the limit"
    );
    assert_eq!(rep["files_loaded"].as_u64(), Some(1));
    assert_eq!(rep["vectors_written"].as_u64(), Some(1));
    let db = Db::connect(&pg);
    let src: String = db.query(&format!("SELECT source FROM \"{table}\""), &[])[0].get(0);
    assert_eq!(src, "good.md");
}

#[test]
fn a_missing_path_is_a_configuration_error() {
    let server = EmbedServer::start(&[]);
    let r =
        run(load_cmd(&server, "postgres://u@127.0.0.1:1/db", "t", 16).arg("/definitely/not/here"));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("/definitely/not/here"), "{}", r.stderr);
    assert_eq!(server.requests(), 0);
}

#[test]
fn the_same_relative_path_under_two_paths_is_refused_not_overwritten() {
    let Some(pg) = pg_url("duplicate_relative_paths") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", "16"]);
    let table = unique_table("dup");
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    std::fs::write(a.path().join("notes.md"), "Notes from the first folder.").unwrap();
    std::fs::write(b.path().join("notes.md"), "Notes from the second folder.").unwrap();
    let report = a.path().join("r.json");
    let r = run(load_cmd(&server, &pg, &table, 16)
        .arg(a.path())
        .arg(b.path())
        .arg("--report")
        .arg(&report));
    assert_eq!(r.code, 0);
    assert_eq!(
        read_report(&report)["files_skipped"]["duplicate source path"].as_u64(),
        Some(1)
    );
    assert!(
        r.stdout.contains("--source-prefix"),
        "the message says how to load both"
    );
    let db = Db::connect(&pg);
    let content: String = db.query(&format!("SELECT content FROM \"{table}\""), &[])[0].get(0);
    assert_eq!(content, "Notes from the first folder.");

    // Loaded in a second run with a prefix, the other file gets rows of its own.
    let r = run(load_cmd(&server, &pg, &table, 16)
        .arg(b.path())
        .args(["--source-prefix", "second/"]));
    assert_eq!(r.code, 0);
    let rows: Vec<(String, String)> = db
        .query(
            &format!("SELECT source, content FROM \"{table}\" ORDER BY source"),
            &[],
        )
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        rows,
        vec![
            (
                "notes.md".to_string(),
                "Notes from the first folder.".to_string()
            ),
            (
                "second/notes.md".to_string(),
                "Notes from the second folder.".to_string()
            )
        ]
    );
}
