//! Reading manifest files.

use crate::Diagnostic;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// One file's text; `file` is how diagnostics name it.
#[derive(Debug, Clone)]
pub struct Source {
    pub file: String,
    pub content: String,
}

const EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// Every manifest file below `dir`, sorted by path. Symlinks are followed (a
/// Kubernetes ConfigMap mount is a tree of them), but entries starting with `..`
/// are skipped: they are the mount's timestamped copies of the same files.
pub fn read_dir(dir: &Path) -> Result<Vec<Source>, Vec<Diagnostic>> {
    let mut files = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let mut errors = Vec::new();
    walk(dir, &mut files, &mut seen, &mut errors);
    let mut sources = Vec::new();
    for path in files {
        match std::fs::read_to_string(&path) {
            Ok(content) => sources.push(Source {
                file: path.display().to_string(),
                content,
            }),
            Err(e) => errors.push(Diagnostic::error(
                &path.display().to_string(),
                None,
                "",
                format!("cannot read: {e}"),
            )),
        }
    }
    if errors.is_empty() {
        Ok(sources)
    } else {
        Err(errors)
    }
}

fn walk(
    dir: &Path,
    files: &mut BTreeSet<PathBuf>,
    seen: &mut BTreeSet<PathBuf>,
    errors: &mut Vec<Diagnostic>,
) {
    // Canonical paths guard against reading a file twice or looping on a cycle.
    let Ok(canonical) = dir.canonicalize() else {
        errors.push(Diagnostic::error(
            &dir.display().to_string(),
            None,
            "",
            "no such directory",
        ));
        return;
    };
    if !seen.insert(canonical) {
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push(Diagnostic::error(
                &dir.display().to_string(),
                None,
                "",
                format!("cannot list: {e}"),
            ));
            return;
        }
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with("..") {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            walk(&path, files, seen, errors);
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e))
        {
            if let Ok(c) = path.canonicalize() {
                if seen.insert(c) {
                    files.insert(path);
                }
            }
        }
    }
}
