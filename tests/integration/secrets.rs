//! API keys and database passwords never reach logs, errors or the report.

use crate::common::*;

const KEY: &str = "sk-test-Zq8vX2mKp4RtY7wLs9Nb";

#[test]
fn a_rejected_key_stops_the_run_without_printing_it() {
    let Some(pg) = pg_url("rejected_key") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", "16", "--api-key", "the-right-key"]);
    let table = unique_table("key");
    let report = std::env::temp_dir().join(format!("{table}.json"));
    let r = run(load_cmd(&server, &pg, &table, 16)
        .arg(fixtures())
        .args(["-vv", "--report"])
        .arg(&report)
        .env("OPENAI_API_KEY", KEY));
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("401"), "{}", r.stderr);
    assert!(
        r.stderr.contains("EMBEDDING_BINDING_API_KEY"),
        "says which setting to fix"
    );
    let report_text = std::fs::read_to_string(&report).unwrap();
    for (what, text) in [("output", r.all_output()), ("report", report_text)] {
        assert!(
            !text.contains(KEY) && !text.contains("Zq8vX2mKp4"),
            "the key leaked into the {what}"
        );
    }
    // At most the 8 requests in flight when the first 401 came back.
    let sent = server.requests();
    assert!(sent <= 8, "sent {sent} requests: kept sending after a 401");
}

#[test]
fn the_right_key_from_env_works_and_the_password_never_prints() {
    let Some(pg) = pg_url("right_key") else {
        return;
    };
    let server = EmbedServer::start(&["--dim", "16", "--api-key", KEY]);
    let table = unique_table("keyok");
    // The RAG API's split POSTGRES_* settings, password included.
    let u = url::Url::parse(&pg).unwrap();
    let password = u.password().unwrap_or("").to_string();
    assert!(!password.is_empty(), "the test server uses a password");
    let report = std::env::temp_dir().join(format!("{table}.json"));
    let mut cmd = vecload();
    cmd.arg("load")
        .arg(fixtures().join("guides"))
        .args(["--table", &table, "--progress", "log", "-vv", "--report"])
        .arg(&report)
        .env("EMBEDDING_BINDING_HOST", &server.url)
        .env("EMBEDDING_MODEL", "m")
        .env("EMBEDDING_DIM", "16")
        .env("EMBEDDING_BINDING_API_KEY", KEY)
        .env("VECTOR_STORAGE", "PGVectorStorage")
        .env("POSTGRES_HOST", u.host_str().unwrap())
        .env("POSTGRES_PORT", u.port().unwrap().to_string())
        .env("POSTGRES_DATABASE", u.path().trim_start_matches('/'))
        .env("POSTGRES_USER", u.username())
        .env("POSTGRES_PASSWORD", &password)
        .env("POSTGRES_SSLMODE", "disable");
    let r = run(&mut cmd);
    assert_eq!(r.code, 0);
    let report_text = std::fs::read_to_string(&report).unwrap();
    for (what, text) in [("output", r.all_output()), ("report", report_text)] {
        assert!(!text.contains(KEY), "the key leaked into the {what}");
        assert!(
            !text.contains(&password),
            "the password leaked into the {what}"
        );
    }
    // A wrong password: the error names the server and user, not the password.
    cmd.env("POSTGRES_PASSWORD", "wrong-Pa55word-xyz");
    let r = run(&mut cmd);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("cannot connect to PostgreSQL")
            && r.stderr.contains("password authentication failed"),
        "{}",
        r.stderr
    );
    assert!(!r.all_output().contains("wrong-Pa55word-xyz"));
}

#[test]
fn help_does_not_show_secret_env_values() {
    let out = vecload()
        .args(["load", "--help"])
        .env("EMBEDDING_BINDING_API_KEY", KEY)
        .env("DATABASE_URL", "postgres://u:TopSecretPw@h/d")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("--embed-api-key"));
    assert!(
        !text.contains(KEY) && !text.contains("TopSecretPw"),
        "{text}"
    );
}
