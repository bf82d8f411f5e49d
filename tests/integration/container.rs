//! The binary as the container image runs it (Dockerfile): in a root file
//! system that holds nothing but vecload and the shared libraries it links
//! (glibc and libgcc, what distroless/cc-debian12 ships; no shell, no
//! certificates, no tools), as the image's non-root user 65532, with the
//! image's HOME. PDFs and Office files are read in child processes of the
//! binary itself (`/proc/self/exe`), so they are part of the check.
//!
//! No container engine runs on CI, so this is the check that can run:
//! `chroot` into such a tree. It needs root (and a /proc mount); without
//! them it is skipped loudly.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// A root file system with `bin` and its libraries; /proc mounted until drop.
struct Rootfs {
    dir: tempfile::TempDir,
    proc_mounted: bool,
}

impl Rootfs {
    fn build(bin: &Path) -> Result<Rootfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let root = dir.path();
        let put = |from: &Path, to: &str| -> Result<(), String> {
            let dest = root.join(to.trim_start_matches('/'));
            std::fs::create_dir_all(dest.parent().expect("a parent")).map_err(|e| e.to_string())?;
            std::fs::copy(from, &dest).map_err(|e| format!("{}: {e}", from.display()))?;
            Ok(())
        };
        put(bin, "/usr/local/bin/vecload")?;
        let ldd = Command::new("ldd")
            .arg(bin)
            .output()
            .map_err(|e| e.to_string())?;
        for line in String::from_utf8_lossy(&ldd.stdout).lines() {
            // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
            // "/lib64/ld-linux-x86-64.so.2 (0x...)"
            let path = line
                .split("=>")
                .last()
                .and_then(|s| s.split_whitespace().next())
                .filter(|p| p.starts_with('/'));
            if let Some(p) = path {
                put(&std::fs::canonicalize(p).map_err(|e| e.to_string())?, p)?;
            }
        }
        for d in ["proc", "dev", "tmp", "home/nonroot", "etc", "docs"] {
            std::fs::create_dir_all(root.join(d)).map_err(|e| e.to_string())?;
        }
        // The device nodes a container runtime gives every container (the
        // extraction children's stdin is /dev/null).
        for (name, minor) in [
            ("null", "3"),
            ("zero", "5"),
            ("random", "8"),
            ("urandom", "9"),
        ] {
            let dev = root.join("dev").join(name);
            let made = Command::new("mknod")
                .args(["-m", "666"])
                .arg(&dev)
                .args(["c", "1", minor])
                .status()
                .map_err(|e| e.to_string())?;
            if !made.success() {
                return Err(format!("cannot make {}", dev.display()));
            }
        }
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
        )
        .map_err(|e| e.to_string())?;
        let chown = |p: &str| {
            Command::new("chown")
                .args(["-R", "65532:65532"])
                .arg(root.join(p))
                .status()
        };
        chown("home/nonroot").map_err(|e| e.to_string())?;
        Command::new("chmod")
            .args(["1777"])
            .arg(root.join("tmp"))
            .status()
            .map_err(|e| e.to_string())?;
        let mounted = Command::new("mount")
            .args(["-t", "proc", "proc"])
            .arg(root.join("proc"))
            .status()
            .map_err(|e| e.to_string())?
            .success();
        if !mounted {
            return Err("cannot mount /proc in the root file system".into());
        }
        Ok(Rootfs {
            dir,
            proc_mounted: true,
        })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Rootfs {
    fn drop(&mut self) {
        if self.proc_mounted {
            let _ = Command::new("umount")
                .arg(self.dir.path().join("proc"))
                .status();
        }
    }
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read fixtures") {
        let entry = entry.expect("entry");
        let p = entry.path();
        let ty = entry.file_type().expect("type");
        if ty.is_dir() {
            std::fs::create_dir_all(to.join(entry.file_name())).expect("mkdir");
            copy_tree(&p, &to.join(entry.file_name()));
        } else if ty.is_file() {
            std::fs::copy(&p, to.join(entry.file_name())).expect("copy");
        }
    }
}

#[test]
fn the_binary_loads_documents_as_the_image_runs_it_non_root_with_only_its_libraries() {
    let test = "container_rootfs";
    let Some(pg) = pg_url(test) else { return };
    // SAFETY: geteuid only reads the process's user id.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("=== SKIPPED {test}: chroot needs root ===");
        return;
    }
    let rootfs = match Rootfs::build(Path::new(env!("CARGO_BIN_EXE_vecload"))) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("=== SKIPPED {test}: {e} ===");
            return;
        }
    };
    let docs: PathBuf = rootfs.path().join("docs");
    copy_tree(&fixtures().join("guides"), &docs);
    copy_tree(&fixtures().join("../formats"), &docs);
    let server = EmbedServer::start(&["--dim", "16"]);
    let table = unique_table("rootfs");
    let r = run(Command::new("chroot")
        .args(["--userspec=65532:65532"])
        .arg(rootfs.path())
        .args(["/usr/local/bin/vecload", "load", "/docs"])
        .args([
            "--embed-url",
            &server.url,
            "--embed-model",
            "m",
            "--embed-dim",
            "16",
        ])
        .args(["--pg-url", &pg, "--table", &table, "--log-format", "json"])
        .args(["--state", "/home/nonroot/state.redb", "--report", "-"])
        .env_clear()
        // The image's environment: distroless's PATH, its HOME.
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOME", "/home/nonroot"));
    assert_eq!(r.code, 0, "{}", r.all_output());
    let report: serde_json::Value = serde_json::from_str(r.stdout.trim()).expect("the report");
    let skipped = &report["files_skipped"];
    for crash in ["parser crashed", "parser panicked", "timed out"] {
        assert!(skipped.get(crash).is_none(), "{crash}: {report}");
    }
    let formats = &report["files_by_format"];
    assert!(
        formats["pdf"].as_u64() > Some(0) && formats["docx"].as_u64() > Some(0),
        "{report}"
    );
    let rows = Db::connect(&pg).count(&table);
    assert!(rows > 0);
    assert_eq!(report["vectors_written"].as_i64(), Some(rows));
}
