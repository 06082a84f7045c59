//! Every manifest the README and docs/ show runs as written: each YAML block that is a
//! manifest (or a list of stages, given a data set to run on) is planned by `cellnets
//! list` on small synthetic BloodMNIST files, so an example cannot rot unnoticed.

use crate::common;
use crate::common::outputs::cellnets_command;

use std::path::{Path, PathBuf};

/// (file, line, text) of every ```yaml block in README.md and docs/*.md.
fn yaml_blocks() -> Vec<(PathBuf, usize, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let mut blocks = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut open: Option<(usize, String)> = None;
        for (number, line) in text.lines().enumerate() {
            match &mut open {
                None if line.trim_start() == "```yaml" => open = Some((number + 2, String::new())),
                None => {}
                Some(_) if line.trim_start() == "```" => {
                    let (start, block) = open.take().unwrap();
                    blocks.push((file.clone(), start, block));
                }
                Some((_, block)) => {
                    block.push_str(line);
                    block.push('\n');
                }
            }
        }
    }
    blocks
}

/// The manifest a block stands for: itself when it has `stages`, a list of stages under
/// BloodMNIST when it is one, else none (a fragment of another kind, such as a key's
/// value alone).
fn as_manifest(block: &str) -> Option<String> {
    if block.lines().any(|line| line.starts_with("stages:")) {
        return Some(block.to_string());
    }
    let first = block.lines().find(|line| !line.trim().is_empty())?;
    first.trim_start().starts_with("- name:").then(|| {
        format!("dataset: {{name: bloodmnist}}\ndefaults: {{epochs: 2}}\nstages:\n{block}")
    })
}

#[test]
fn every_manifest_in_the_docs_plans_as_written() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    common::tiny_bloodmnist(&dir.path().join("data"));
    let blocks = yaml_blocks();
    let manifests: Vec<_> = blocks
        .iter()
        .filter_map(|(file, line, block)| Some((file, line, as_manifest(block)?)))
        .collect();
    // docs/manifest.md's example and docs/search.md's two stages at least.
    assert!(manifests.len() >= 3, "{blocks:?}");
    for (file, line, manifest) in manifests {
        std::fs::write(dir.path().join("example.yaml"), &manifest).unwrap();
        let output = cellnets_command(dir.path())
            .args(["list", "example.yaml", "--data-dir", "data", "--out", "out"])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "the example at {}:{line} does not plan: {}\n{manifest}",
            file.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
