//! Finding the logpipe tree at run time, the way git finds its repository.
//!
//! The dev tools must act on the tree they are run in, not the one they were
//! compiled in: a copied checkout sharing a `target/` dir (or a copied
//! binary) would otherwise start and stop the original tree's stack.
//!
//! `LOGPIPE_ROOT` wins when set (it must name a logpipe tree). Otherwise the
//! current directory and then each parent is tried; the first that is a
//! logpipe tree is the root. A directory is a logpipe tree when its
//! `Cargo.toml` has a `[workspace]` whose `members` list `"tools/devstack"`
//! and `tools/devstack/Cargo.toml` exists — a plain Cargo workspace (or a
//! crate inside this one) is not enough.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// Overrides the search.
pub const ROOT_ENV: &str = "LOGPIPE_ROOT";

#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error(
        "not inside a logpipe tree: no directory from {start} upwards has a Cargo.toml whose [workspace] lists \"tools/devstack\" (cd into the checkout or set {ROOT_ENV})"
    )]
    NotFound { start: PathBuf },
    #[error(
        "{ROOT_ENV}={path} is not a logpipe tree (needs a Cargo.toml whose [workspace] lists \"tools/devstack\")"
    )]
    BadOverride { path: PathBuf },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The root for this process: `LOGPIPE_ROOT`, else the search from the
/// current directory. Canonical, so paths compare with `/proc` links.
pub fn workspace_root() -> Result<PathBuf, RootError> {
    let cwd = std::env::current_dir().map_err(|source| RootError::Io {
        what: "reading the current directory",
        path: PathBuf::from("."),
        source,
    })?;
    find_root(&cwd, std::env::var_os(ROOT_ENV).as_deref())
}

/// The search itself, from `start` with an optional override (testable
/// without touching the process environment).
pub fn find_root(start: &Path, override_root: Option<&OsStr>) -> Result<PathBuf, RootError> {
    if let Some(path) = override_root.filter(|p| !p.is_empty()) {
        let path = start.join(path);
        if !is_logpipe_root(&path) {
            return Err(RootError::BadOverride { path });
        }
        return canonical(&path);
    }
    let start = canonical(start)?;
    start
        .ancestors()
        .find(|dir| is_logpipe_root(dir))
        .map(Path::to_path_buf)
        .ok_or(RootError::NotFound { start })
}

fn canonical(path: &Path) -> Result<PathBuf, RootError> {
    path.canonicalize().map_err(|source| RootError::Io {
        what: "resolving",
        path: path.to_path_buf(),
        source,
    })
}

/// Whether `dir` holds the logpipe workspace (the marker described above).
pub fn is_logpipe_root(dir: &Path) -> bool {
    if !dir.join("tools/devstack/Cargo.toml").is_file() {
        return false;
    }
    std::fs::read_to_string(dir.join("Cargo.toml"))
        .map(|text| workspace_lists_devstack(&text))
        .unwrap_or(false)
}

/// A line scan, enough for our own manifest: inside the `[workspace]`
/// table (up to the next table header), some uncommented line quotes
/// `"tools/devstack"`.
fn workspace_lists_devstack(manifest: &str) -> bool {
    let mut in_workspace = false;
    for line in manifest.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.starts_with('[') && !line.starts_with("[\"") {
            in_workspace = line == "[workspace]";
            continue;
        }
        if in_workspace && line.contains("\"tools/devstack\"") {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "[workspace]\nresolver = \"3\"\nmembers = [\n    \"functions/ingest\",\n    \"tools/devstack\", # the dev CLI\n]\n\n[workspace.package]\nedition = \"2024\"\n";

    fn tree(dir: &Path) {
        std::fs::create_dir_all(dir.join("tools/devstack")).unwrap();
        std::fs::write(dir.join("Cargo.toml"), MANIFEST).unwrap();
        std::fs::write(
            dir.join("tools/devstack/Cargo.toml"),
            "[package]\nname = \"logpipe-devstack\"\n",
        )
        .unwrap();
    }

    #[test]
    fn finds_the_tree_from_itself_and_from_nested_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("checkout");
        tree(&root);
        let nested = root.join("functions/ingest/src/deep");
        std::fs::create_dir_all(&nested).unwrap();
        let want = root.canonicalize().unwrap();
        assert_eq!(find_root(&root, None).unwrap(), want);
        assert_eq!(find_root(&nested, None).unwrap(), want);
        // The crate dir has its own Cargo.toml (no [workspace]): keep going up.
        assert_eq!(find_root(&root.join("tools/devstack"), None).unwrap(), want);
    }

    #[test]
    fn the_nearest_tree_wins_for_a_copy_inside_another() {
        let tmp = tempfile::tempdir().unwrap();
        let outer = tmp.path().join("main");
        tree(&outer);
        let copy = outer.join("scratch/copy");
        tree(&copy);
        std::fs::create_dir_all(copy.join("infra")).unwrap();
        assert_eq!(
            find_root(&copy.join("infra"), None).unwrap(),
            copy.canonicalize().unwrap()
        );
        assert_eq!(
            find_root(&outer.join("scratch"), None).unwrap(),
            outer.canonicalize().unwrap()
        );
    }

    #[test]
    fn outside_any_tree_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("elsewhere/sub");
        std::fs::create_dir_all(&dir).unwrap();
        // Some other Cargo workspace is not a logpipe tree.
        std::fs::write(
            tmp.path().join("Cargo.toml"),
            "[workspace]\nmembers = [\"tools/other\"]\n",
        )
        .unwrap();
        std::fs::create_dir_all(tmp.path().join("tools/devstack")).unwrap();
        std::fs::write(tmp.path().join("tools/devstack/Cargo.toml"), "").unwrap();
        let err = find_root(&dir, None).unwrap_err();
        assert!(matches!(err, RootError::NotFound { .. }), "{err}");
        assert!(
            err.to_string().contains("not inside a logpipe tree"),
            "{err}"
        );
        assert!(err.to_string().contains(ROOT_ENV), "{err}");
    }

    #[test]
    fn devstack_outside_the_workspace_table_does_not_count() {
        assert!(workspace_lists_devstack(MANIFEST));
        assert!(!workspace_lists_devstack(
            "[workspace]\nmembers = [\"a\"]\n\n[workspace.dependencies]\nx = { path = \"tools/devstack\" }\n"
        ));
        assert!(!workspace_lists_devstack(
            "[workspace]\n# members = [\"tools/devstack\"]\nmembers = []\n"
        ));
        assert!(!workspace_lists_devstack(
            "[package]\nname = \"x\"\n# \"tools/devstack\"\n"
        ));
    }

    #[test]
    fn the_override_wins_and_must_be_a_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let here = tmp.path().join("here");
        let there = tmp.path().join("there");
        tree(&here);
        tree(&there);
        assert_eq!(
            find_root(&here, Some(there.as_os_str())).unwrap(),
            there.canonicalize().unwrap()
        );
        // Relative to the starting directory, like a relative path in a shell.
        assert_eq!(
            find_root(&here, Some(OsStr::new("../there"))).unwrap(),
            there.canonicalize().unwrap()
        );
        // Empty means unset.
        assert_eq!(
            find_root(&here, Some(OsStr::new(""))).unwrap(),
            here.canonicalize().unwrap()
        );
        let plain = tmp.path().join("plain");
        std::fs::create_dir_all(&plain).unwrap();
        let err = find_root(&here, Some(plain.as_os_str())).unwrap_err();
        assert!(matches!(err, RootError::BadOverride { .. }), "{err}");
    }

    #[test]
    fn the_real_checkout_is_a_tree() {
        // cargo runs unit tests in the crate's directory.
        let root = find_root(Path::new("."), None).unwrap();
        assert!(root.join("tools/devstack/src/root.rs").is_file());
    }
}
