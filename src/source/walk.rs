//! Finds the files to load under each PATH: follows symlinks (loops are
//! detected and reported), applies include/exclude globs to paths relative to
//! the PATH, and records every file it passes over with the reason.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};
use walkdir::WalkDir;

use super::settings::SourceSettings;
use crate::records::Skip;
use crate::settings::ConfigError;

/// Directories nobody wants embedded: VCS metadata, build output, caches,
/// vecload's own state.
const DEFAULT_EXCLUDES: &[&str] = &[
    "**/.git",
    "**/.hg",
    "**/.svn",
    "**/target",
    "**/node_modules",
    "**/__pycache__",
    "**/.venv",
    "**/.tox",
    "**/.vecload",
    "**/.DS_Store",
];

#[derive(Debug, Clone)]
pub struct FileEntry {
    pub path: PathBuf,
    /// Relative to the PATH given, with `/` separators; the stored `source`.
    pub rel: String,
}

pub struct Filter {
    include: Option<GlobSet>,
    exclude: GlobSet,
    prefix: Option<String>,
    only: Option<std::collections::HashSet<String>>,
    unique_file_names: bool,
}

impl Filter {
    pub fn new(cfg: &SourceSettings) -> Result<Filter, ConfigError> {
        let build = |globs: &[String], flag: &str| -> Result<GlobSet, ConfigError> {
            let mut b = GlobSetBuilder::new();
            for g in globs {
                let glob = Glob::new(g)
                    .map_err(|e| ConfigError(format!("{flag} {g:?} is not a valid glob: {e}")))?;
                b.add(glob);
                // `dir` and `dir/**` both mean the directory and what is in it.
                if !g.ends_with("/**")
                    && let Ok(inner) = Glob::new(&format!("{g}/**"))
                {
                    b.add(inner);
                }
            }
            b.build().map_err(|e| ConfigError(format!("{flag}: {e}")))
        };
        let mut excludes = cfg.exclude.clone();
        if cfg.default_excludes {
            excludes.extend(DEFAULT_EXCLUDES.iter().map(|s| s.to_string()));
        }
        let include = if cfg.include.is_empty() {
            None
        } else {
            Some(build(&cfg.include, "--include")?)
        };
        Ok(Filter {
            include,
            exclude: build(&excludes, "--exclude")?,
            prefix: cfg.source_prefix.clone(),
            only: cfg.only_files.clone(),
            unique_file_names: cfg.unique_file_names,
        })
    }

    fn excluded(&self, rel: &str) -> bool {
        self.exclude.is_match(rel)
    }

    fn included(&self, rel: &str) -> bool {
        self.include.as_ref().is_none_or(|g| g.is_match(rel))
    }

    /// The stored path of a file at `rel` (relative to its PATH: a key
    /// relative to an S3 prefix), or None when the filters leave it out:
    /// the same decisions `walk` makes for a file on disk.
    pub fn accept(&self, rel: &str) -> Option<String> {
        if self.excluded(rel) || !self.included(rel) {
            return None;
        }
        let rel = match &self.prefix {
            Some(p) => format!("{p}/{rel}"),
            None => rel.to_string(),
        };
        if self.only.as_ref().is_some_and(|only| !only.contains(&rel)) {
            return None;
        }
        Some(rel)
    }

    /// LightRAG's layout: two files of one name would share a document id.
    pub fn unique_file_names(&self) -> bool {
        self.unique_file_names
    }
}

pub struct Walk {
    pub files: Vec<FileEntry>,
    pub skipped: Vec<Skip>,
    /// Files seen, loadable or not (excluded directories are not entered).
    pub seen: u64,
}

pub fn walk(paths: &[PathBuf], filter: &Filter) -> Walk {
    let mut out = Walk {
        files: Vec::new(),
        skipped: Vec::new(),
        seen: 0,
    };
    // Two PATHs can hold the same relative path; both would get the same ids
    // and overwrite each other, so the second one is refused.
    let mut by_rel: HashMap<String, PathBuf> = HashMap::new();
    let mut by_name: HashMap<String, PathBuf> = HashMap::new();
    for root in paths {
        let root_is_file = std::fs::metadata(root)
            .map(|m| m.is_file())
            .unwrap_or(false);
        let walker = WalkDir::new(root).follow_links(true).sort_by_file_name();
        let mut it = walker.into_iter();
        while let Some(entry) = it.next() {
            let entry = match entry {
                Ok(e) => e,
                Err(err) => {
                    out.seen += 1;
                    out.skipped.push(walk_error(&err));
                    continue;
                }
            };
            let rel = if root_is_file {
                entry.file_name().to_string_lossy().into_owned()
            } else {
                relative(root, entry.path())
            };
            if entry.file_type().is_dir() {
                if !rel.is_empty() && filter.excluded(&rel) {
                    it.skip_current_dir();
                }
                continue;
            }
            if filter.excluded(&rel) || !filter.included(&rel) {
                continue;
            }
            out.seen += 1;
            if !entry.file_type().is_file() {
                out.skipped.push(Skip::new(
                    entry.path(),
                    "not a regular file",
                    "special file (socket, device or pipe)",
                ));
                continue;
            }
            let rel = match &filter.prefix {
                Some(p) => format!("{p}/{rel}"),
                None => rel,
            };
            if filter
                .only
                .as_ref()
                .is_some_and(|only| !only.contains(&rel))
            {
                continue;
            }
            if let Some(first) = by_rel.get(&rel) {
                out.skipped.push(Skip::new(
                    entry.path(),
                    "duplicate source path",
                    format!(
                        "same relative path {rel:?} as {}; give the folders' common parent as PATH \
                         (with --include to pick folders), or load them in separate runs with --source-prefix",
                        first.display()
                    ),
                ));
                continue;
            }
            if filter.unique_file_names {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(first) = by_name.get(&name) {
                    out.skipped.push(Skip::new(
                        entry.path(),
                        "duplicate file name",
                        format!(
                            "LightRAG identifies a document by its file name, and {} has it too; \
                             rename one, or load it into another workspace",
                            first.display()
                        ),
                    ));
                    continue;
                }
                by_name.insert(name, entry.path().to_path_buf());
            }
            by_rel.insert(rel.clone(), entry.path().to_path_buf());
            out.files.push(FileEntry {
                path: entry.path().to_path_buf(),
                rel,
            });
        }
    }
    out
}

fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.join("/")
}

fn walk_error(err: &walkdir::Error) -> Skip {
    let path = err.path().map(Path::to_path_buf).unwrap_or_default();
    if let Some(ancestor) = err.loop_ancestor() {
        return Skip::new(
            &path,
            "symlink loop",
            format!("symlink loops back to {}", ancestor.display()),
        );
    }
    let broken = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink())
        && std::fs::metadata(&path).is_err();
    if broken {
        return Skip::new(&path, "broken symlink", "symlink target does not exist");
    }
    let detail = err
        .io_error()
        .map(|e| e.to_string())
        .unwrap_or_else(|| err.to_string());
    Skip::new(&path, "unreadable", detail)
}
