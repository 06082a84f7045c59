//! A data set from a folder of images: trains, reports, predicts with the folder's
//! class names, and is decoded once, until an image changes.

use crate::common;

use image::RgbImage;
use std::path::{Path, PathBuf};

const CLASS_NAMES: [&str; 4] = ["basophil", "eosinophil", "lymphocyte", "monocyte"];

/// 240 learnable 8x8 images as PNG files under `<dir>/cells/<class>/`.
fn write_folder(dir: &Path) -> PathBuf {
    let folder = dir.join("cells");
    let (images, labels) = {
        let _generator = common::torch_generator();
        tch::manual_seed(7);
        common::learnable_split(240)
    };
    for row in 0..240 {
        let class = labels.int64_value(&[row, 0]) as usize;
        let class_dir = folder.join(CLASS_NAMES[class]);
        std::fs::create_dir_all(&class_dir).unwrap();
        let bytes = Vec::<u8>::try_from(images.get(row).contiguous().view([-1])).unwrap();
        RgbImage::from_raw(8, 8, bytes)
            .unwrap()
            .save(class_dir.join(format!("cell{row:03}.png")))
            .unwrap();
    }
    folder
}

/// The folder set's caches, which go beside the data files when that can be written.
fn caches(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir.join("data/.cellnets-cache"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "npz"))
        .collect();
    found.sort();
    found
}

fn ok(output: std::process::Output) -> String {
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

#[test]
fn a_folder_trains_reports_predicts_and_is_decoded_once_until_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let folder = write_folder(dir.path());
    std::fs::write(
        dir.path().join("experiments.yaml"),
        "dataset: {folder: cells, image_size: 8, split: {val: 0.1, test: 0.2, seed: 3}}\n\
         defaults: {epochs: 3, seed: 1, optimizer: adam}\n\
         stages:\n  - name: cnn\n    model: {kind: cnn, kernels: 4, kernel_size: 3, pool: max}\n",
    )
    .unwrap();

    let first = ok(common::cellnets(dir.path(), &["experiments.yaml"]));
    assert!(first.contains("reading 240 images of cells"), "{first}");
    let [cache] = &caches(dir.path())[..] else {
        panic!("one cache: {:?}", caches(dir.path()))
    };
    let name = cache.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("cells_8-"), "{name}");
    // The official layout: stratified 70/10/20 of 60 images per class, all classes in train.
    let arrays: Vec<(String, tch::Tensor)> = tch::Tensor::read_npz(cache).unwrap();
    let rows = |key: &str| arrays.iter().find(|(n, _)| n == key).unwrap().1.size();
    assert_eq!(rows("train_images"), [168, 8, 8, 3]);
    assert_eq!(rows("val_images"), [24, 8, 8, 3]);
    assert_eq!(rows("test_images"), [48, 8, 8, 3]);
    assert_eq!(rows("test_labels"), [48, 1]);
    let result = std::fs::read_to_string(dir.path().join("out/cnn/run/result.yaml")).unwrap();
    assert!(result.contains("folder: cells"), "{result}");

    let report = ok(common::cellnets(
        dir.path(),
        &["report", "experiments.yaml"],
    ));
    assert!(report.contains("report.md"), "{report}");
    let markdown = std::fs::read_to_string(dir.path().join("out/report.md")).unwrap();
    assert!(
        markdown.contains("cells") && markdown.contains("eosinophil"),
        "{markdown}"
    );

    // Predictions are named by the class folders.
    let predicted = ok(common::cellnets(
        dir.path(),
        &[
            "predict",
            "out/cnn/run",
            "cells/monocyte",
            "--device",
            "cpu",
        ],
    ));
    assert!(
        predicted.contains("wrote predictions.csv (60 of 60"),
        "{predicted}"
    );
    let (header, _) =
        cellnets::storage::files::read_table(&dir.path().join("predictions.csv")).unwrap();
    assert_eq!(header[2..6], CLASS_NAMES.map(|name| format!("p_{name}")));

    // A second run decodes nothing and trains nothing: the cache and the run are reused.
    let modified = std::fs::metadata(cache).unwrap().modified().unwrap();
    let second = ok(common::cellnets(dir.path(), &["experiments.yaml"]));
    assert!(!second.contains("reading"), "{second}");
    assert!(!second.contains("epoch 1/3"), "{second}");
    assert_eq!(
        std::fs::metadata(cache).unwrap().modified().unwrap(),
        modified
    );

    // One changed image is a new cache, new data and a retrained run.
    let changed = folder.join("basophil/cell000.png");
    RgbImage::from_pixel(8, 8, image::Rgb([1, 2, 3]))
        .save(&changed)
        .unwrap();
    let third = ok(common::cellnets(dir.path(), &["experiments.yaml"]));
    assert!(third.contains("reading 240 images"), "{third}");
    assert!(third.contains("epoch 1/3"), "{third}");
    assert_eq!(caches(dir.path()).len(), 2);
}

#[test]
fn a_folder_that_cannot_be_a_data_set_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let folder = write_folder(dir.path());
    let manifest = |dataset: &str| {
        std::fs::write(
            dir.path().join("experiments.yaml"),
            format!(
                "dataset: {dataset}\ndefaults: {{epochs: 1}}\nstages:\n  - name: mlp\n    \
                 model: {{kind: mlp, hidden: 4}}\n"
            ),
        )
        .unwrap();
        let output = common::cellnets(dir.path(), &["experiments.yaml"]);
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let error = manifest("{folder: nowhere}");
    assert!(error.contains("nowhere is not a folder"), "{error}");
    let error = manifest("{folder: cells, split: {val: 0.5, test: 0.5}}");
    assert!(error.contains("leave images to train on"), "{error}");
    let error = manifest("{image_size: 8}");
    assert!(
        error.contains("needs a `name`") && error.contains("`folder`"),
        "{error}"
    );

    std::fs::write(folder.join("monocyte/broken.png"), "not a picture").unwrap();
    let error = manifest("{folder: cells, image_size: 8}");
    assert!(
        error.contains("1 of the data set's image files cannot be read")
            && error.contains("broken.png"),
        "{error}"
    );
    std::fs::remove_file(folder.join("monocyte/broken.png")).unwrap();

    std::fs::create_dir(folder.join("train")).unwrap();
    let error = manifest("{folder: cells, image_size: 8}");
    assert!(error.contains("has train/ but no test/"), "{error}");
}

#[test]
fn a_folder_sets_cache_goes_to_the_cache_folder_and_never_into_the_data_folder() {
    let dir = tempfile::tempdir().unwrap();
    write_folder(dir.path());
    std::fs::write(
        dir.path().join("experiments.yaml"),
        "dataset: {folder: cells, image_size: 8}\ndefaults: {epochs: 1}\n\
         stages:\n  - name: mlp\n    model: {kind: mlp, hidden: 4}\n",
    )
    .unwrap();
    let output = common::outputs::cellnets_command(dir.path())
        .arg("list")
        .env("CELLNETS_CACHE_DIR", dir.path().join("cache"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let cached: Vec<_> = std::fs::read_dir(dir.path().join("cache"))
        .unwrap()
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(!dir.path().join("data").exists());
}
