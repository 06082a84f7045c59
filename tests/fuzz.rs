//! Property tests (fuzzing) of the two parsers that read untrusted input: the manifest
//! and the npz validation. Neither may panic or crash, whatever the bytes; the files in
//! tests/corpus are hostile manifests that must each be refused with a message.

use crate::common;

use cellnets::study::{manifest, plan};
use proptest::prelude::*;
use std::path::Path;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus");

fn corpus(name: &str) -> String {
    std::fs::read_to_string(Path::new(CORPUS).join(name)).unwrap()
}

/// Parses and plans a manifest as `cellnets` does before training.
fn check_manifest(text: &str) -> anyhow::Result<()> {
    let manifest = manifest::parse(text)?;
    plan::plan_all(&manifest, |_| Ok(None))?;
    Ok(())
}

#[test]
fn the_corpus_of_hostile_manifests_is_refused_with_a_message() {
    for entry in std::fs::read_dir(CORPUS).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.extension().is_some_and(|ext| ext == "yaml") && name != "valid.yaml" {
            let error = check_manifest(&corpus(&name)).expect_err(&name);
            assert!(!format!("{error:#}").is_empty());
        }
    }
    check_manifest(&corpus("valid.yaml")).unwrap();
}

fn npz_fixture() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = common::write_npz(dir.path(), "toy.npz", &common::learnable_arrays());
    std::fs::read(path).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics_the_manifest_parser(text in "\\PC{0,200}") {
        let _ = check_manifest(&text);
    }

    #[test]
    fn mutated_manifests_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), "[ -~\n]{0,3}"), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut text = corpus("valid.yaml");
        for (at, insert) in edits {
            let mut at = at.index(text.len());
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            text.replace_range(at..(at + 1).min(text.len()), &insert);
        }
        let _ = check_manifest(&text);
        let mut end = cut.index(text.len() + 1);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let _ = check_manifest(&text[..end]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn damaged_npz_files_are_refused_or_loaded_never_crash(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = npz_fixture();
        // The headers sit at the start of each entry: aim half the flips there.
        for (i, (at, value)) in flips.into_iter().enumerate() {
            let at = if i % 2 == 0 { at.index(bytes.len().min(512)) } else { at.index(bytes.len()) };
            bytes[at] = value;
        }
        let keep = bytes.len() - cut.index(bytes.len() / 4);
        bytes.truncate(keep);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("toy.npz");
        std::fs::write(&path, &bytes).unwrap();
        let _ = common::load_toy(dir.path());
    }
}
