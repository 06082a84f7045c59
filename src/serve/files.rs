//! Which file under out/ a request may read: a path of plain names, decoded once,
//! resolved with every symlink followed, and still inside out/. Anything else is not
//! found, whatever the reason, so a refusal tells nothing about the disk outside.

use super::http::percent_decode;
use std::path::{Component, Path, PathBuf};

/// The file `encoded` (a URL path below `/files/`, percent-encoded) names under `root`
/// (out/, canonical), or `None`.
pub fn resolve(root: &Path, encoded: &str) -> Option<PathBuf> {
    let decoded = percent_decode(encoded)?;
    let relative = Path::new(&decoded);
    // Only names: no root, no `..`, no `.`, no empty segment, no NUL, no backslash (a
    // separator elsewhere), no hidden entries (claims and locks live in dot-files).
    let plain = !decoded.is_empty()
        && !decoded.contains(['\0', '\\'])
        && decoded
            .split('/')
            .all(|segment| !segment.is_empty() && !segment.starts_with('.'))
        && relative
            .components()
            .all(|component| matches!(component, Component::Normal(_)));
    if !plain {
        return None;
    }
    let resolved = root.join(relative).canonicalize().ok()?;
    (resolved.starts_with(root) && resolved.is_file()).then_some(resolved)
}

/// The content type a browser needs for a file under out/, by its extension.
pub fn content_type(path: &Path) -> &'static str {
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    match extension.as_deref() {
        Some("html") => "text/html; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("csv") => "text/csv; charset=utf-8",
        Some("md" | "yaml" | "txt" | "log") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_paths_to_files_inside_the_root_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("out");
        std::fs::create_dir_all(root.join("stage/run")).unwrap();
        std::fs::write(root.join("stage/run/epochs.csv"), "x").unwrap();
        std::fs::write(root.join("stage/.stage.lock"), "").unwrap();
        std::fs::write(dir.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("link")).unwrap();
        std::os::unix::fs::symlink(root.join("stage"), root.join("inside")).unwrap();
        let root = root.canonicalize().unwrap();

        let found = resolve(&root, "stage/run/epochs.csv").unwrap();
        assert_eq!(found, root.join("stage/run/epochs.csv"));
        assert!(resolve(&root, "stage/run/epochs%2Ecsv").is_some());
        assert!(resolve(&root, "inside/run/epochs.csv").is_some());
        for refused in [
            "../secret",
            "stage/../../secret",
            "%2e%2e/secret",
            "%2E%2E%2Fsecret",
            "stage/%2e%2e/%2e%2e/secret",
            "..%5csecret",
            "link",
            "/etc/passwd",
            "%2Fetc%2Fpasswd",
            "stage/.stage.lock",
            "stage//run/epochs.csv",
            "./stage/run/epochs.csv",
            "stage/run",
            "missing",
            "stage/run/epochs.csv%00.png",
            "%252e%252e/secret",
            "",
        ] {
            assert_eq!(resolve(&root, refused), None, "{refused}");
        }
    }
}
