//! Programs from outside cargo that some tests need (Chromium, Python's tensorboard).
//! Where one is missing the test says so and is skipped; under CI (the `CI` variable
//! set, not to `false`) it fails instead, since .ci/run installs them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `found`, or why the test cannot run: a skip printed on a developer's machine, a
/// failure under CI.
pub fn require<T>(what: &str, install: &str, found: Option<T>) -> Option<T> {
    if found.is_some() {
        return found;
    }
    let under_ci = std::env::var("CI").is_ok_and(|value| !value.is_empty() && value != "false");
    assert!(!under_ci, "{what} is missing under CI: {install}");
    eprintln!("SKIPPED: {what} is missing ({install}); set CI=true to make this a failure");
    None
}

fn runs(program: &Path, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// A Python that imports `tensorboard`: $CELLNETS_TENSORBOARD_PYTHON, else python3.
pub fn tensorboard_python() -> Option<PathBuf> {
    let python = std::env::var_os("CELLNETS_TENSORBOARD_PYTHON")
        .map_or_else(|| PathBuf::from("python3"), PathBuf::from);
    let found = runs(&python, &["-c", "import tensorboard"]).then_some(python);
    require(
        "Python's tensorboard package",
        "python3 -m venv V && V/bin/pip install tensorboard, then \
         CELLNETS_TENSORBOARD_PYTHON=V/bin/python",
        found,
    )
}

/// Headless Chromium: $CELLNETS_CHROMIUM, else chromium on the PATH.
pub fn chromium() -> Option<PathBuf> {
    let candidates = match std::env::var_os("CELLNETS_CHROMIUM") {
        Some(path) => vec![PathBuf::from(path)],
        None => ["chromium", "chromium-browser"].map(PathBuf::from).into(),
    };
    let found = candidates
        .into_iter()
        .find(|program| runs(program, &["--headless", "--no-sandbox", "--version"]));
    require(
        "Chromium",
        "apt-get install chromium, or CELLNETS_CHROMIUM=<browser>",
        found,
    )
}

/// The folder of this crate's test scripts (tests/tools/).
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/tools")
        .join(name)
}
