//! `cellnets predict` on image files written from a trained run's data, and on files
//! a user may bring: other formats, depths, channels and sizes, and broken files.

use crate::common;

use cellnets::inference::eval::Saved;
use cellnets::inference::predict;
use cellnets::inference::saved::{Predictor, SavedRun};
use cellnets::storage::files::read_table;
use image::{DynamicImage, GrayImage, ImageBuffer, Luma, Rgb, RgbImage};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

const STAGE: &str =
    "  - name: cnn\n    model: {kind: cnn, kernels: 4, kernel_size: 3, pool: max}\n";

/// A CNN trained two epochs on the toy data (8x8 RGB, 4 classes); returns its folder.
fn trained_run(dir: &Path) -> PathBuf {
    common::run_library(dir, STAGE, false);
    dir.join("out/cnn/run")
}

/// Row `row` of (N, H, W, 3) uint8 images as an RGB image.
fn rgb_row(images: &Tensor, row: i64) -> RgbImage {
    let [_, height, width, _] = images.size()[..] else {
        panic!("4-d images")
    };
    let bytes = Vec::<u8>::try_from(images.get(row).contiguous().view([-1])).unwrap();
    RgbImage::from_raw(width as u32, height as u32, bytes).unwrap()
}

/// The test split of the toy file as read from disk, uint8 (N, H, W, 3).
fn test_images(dir: &Path) -> Tensor {
    let arrays = Tensor::read_npz(dir.join("toy.npz")).unwrap();
    let (_, images) = arrays
        .into_iter()
        .find(|(name, _)| name == "test_images")
        .unwrap();
    images.to_kind(Kind::Uint8)
}

#[test]
fn predictions_from_png_files_equal_eval_on_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let run = trained_run(dir.path());
    let images = test_images(dir.path());
    let rows = images.size()[0];
    let pngs = dir.path().join("pngs");
    std::fs::create_dir(&pngs).unwrap();
    for row in 0..rows {
        rgb_row(&images, row)
            .save(pngs.join(format!("{row:03}.png")))
            .unwrap();
    }

    let saved = SavedRun::open(&run).unwrap();
    let data = common::load_toy(dir.path()).unwrap();
    let report = saved.evaluate(&data, &data.test, Device::Cpu).unwrap();

    // The command line, on the folder: one CSV row per file, in file order.
    let csv = dir.path().join("predictions.csv");
    let output = common::cellnets(
        dir.path(),
        &[
            "predict",
            run.to_str().unwrap(),
            pngs.to_str().unwrap(),
            "--output",
            csv.to_str().unwrap(),
            "--device",
            "cpu",
            "--top",
            "2",
        ],
    );
    assert!(output.status.success(), "{output:?}");
    let (header, table) = read_table(&csv).unwrap();
    assert_eq!(header[..3], ["file", "predicted", "p_class 0"]);
    assert_eq!(header.last().unwrap(), "error");
    assert_eq!(table.len(), rows as usize);
    let names = cellnets::study::reference::class_names("toy", common::CLASSES as usize);
    let cellnets::metrics::TaskOutcome::Classes { predicted, .. } = &report.outcome else {
        panic!("toy labels are classes")
    };
    for (row, cells) in table.iter().enumerate() {
        assert!(cells[0].ends_with(&format!("{row:03}.png")), "{cells:?}");
        assert_eq!(cells[1], names[predicted[row] as usize], "row {row}");
        for (class, cell) in cells[2..2 + common::CLASSES as usize].iter().enumerate() {
            let p: f64 = cell.parse().unwrap();
            let expected = report.probabilities[row][class];
            assert!(
                (p - expected).abs() < 1e-5,
                "row {row} class {class}: {p} vs {expected}"
            );
        }
        assert_eq!(cells.last().unwrap(), "");
    }
    // --top 2: each file's line names two classes.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let first = stdout.lines().next().unwrap();
    assert_eq!(first.matches(", ").count(), 1, "{stdout}");
}

#[test]
fn odd_and_broken_files_are_predicted_or_named_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let run = trained_run(dir.path());
    let images = test_images(dir.path());
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    let path = |name: &str| files.join(name);

    let reference = rgb_row(&images, 0);
    reference.save(path("reference.png")).unwrap();
    reference.save(path("photo.jpg")).unwrap();
    let deep: ImageBuffer<Rgb<u16>, Vec<u16>> = ImageBuffer::from_fn(8, 8, |x, y| {
        let Rgb([r, g, b]) = *reference.get_pixel(x, y);
        Rgb([r as u16 * 257, g as u16 * 257, b as u16 * 257])
    });
    DynamicImage::ImageRgb16(deep)
        .save(path("sixteen_bit.png"))
        .unwrap();
    GrayImage::from_fn(8, 8, |x, y| Luma([reference.get_pixel(x, y).0[0]]))
        .save(path("grey.png"))
        .unwrap();
    RgbImage::from_pixel(1, 1, Rgb([200, 30, 30]))
        .save(path("dot.png"))
        .unwrap();
    RgbImage::from_fn(300, 200, |x, _| Rgb([(x % 256) as u8, 40, 90]))
        .save(path("large.tif"))
        .unwrap();
    reference.save(path("bitmap.bmp")).unwrap();
    let whole = std::fs::read(path("reference.png")).unwrap();
    std::fs::write(path("truncated.png"), &whole[..whole.len() / 2]).unwrap();
    std::fs::write(path("notes.png"), "these are my notes, not an image\n").unwrap();
    let missing = path("missing.png");

    let saved = Saved::Run(Box::new(SavedRun::open(&run).unwrap()));
    let mut named: Vec<PathBuf> = std::fs::read_dir(&files)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    named.sort();
    named.push(missing.clone());
    let input = saved.input_shape().unwrap();
    let predictions = predict::predict(&saved, input, &named, Device::Cpu).unwrap();
    let outcome = |name: &str| {
        &predictions
            .iter()
            .find(|p| p.file.file_name().unwrap() == name)
            .unwrap()
            .outcome
    };
    for name in [
        "reference.png",
        "photo.jpg",
        "sixteen_bit.png",
        "grey.png",
        "dot.png",
        "large.tif",
        "bitmap.bmp",
    ] {
        let probabilities = outcome(name).as_ref().unwrap();
        assert_eq!(probabilities.len(), common::CLASSES as usize, "{name}");
        assert!(
            (probabilities.iter().sum::<f64>() - 1.0).abs() < 1e-9,
            "{name}"
        );
    }
    // 16 bits scaled to 8 and a lossless BMP are the same pixels as the reference PNG.
    for name in ["sixteen_bit.png", "bitmap.bmp"] {
        assert_eq!(outcome(name), outcome("reference.png"), "{name}");
    }
    let truncated = outcome("truncated.png").as_ref().unwrap_err();
    assert!(truncated.contains("cannot decode"), "{truncated}");
    let notes = outcome("notes.png").as_ref().unwrap_err();
    assert!(
        notes.contains("not a PNG, JPEG, TIFF or BMP image"),
        "{notes}"
    );
    let missing = outcome("missing.png").as_ref().unwrap_err();
    assert!(missing.contains("cannot open"), "{missing}");

    // The command line lists the unreadable files and still writes every row.
    let csv = dir.path().join("out.csv");
    let output = common::cellnets(
        dir.path(),
        &[
            "predict",
            run.to_str().unwrap(),
            files.to_str().unwrap(),
            "--output",
            csv.to_str().unwrap(),
            "--device",
            "cpu",
        ],
    );
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("2 of 9 files could not be predicted") && stdout.contains("notes.png"),
        "{stdout}"
    );
    let (_, table) = read_table(&csv).unwrap();
    assert_eq!(table.len(), 9);
    let failed: Vec<&Vec<String>> = table.iter().filter(|row| row[1].is_empty()).collect();
    assert_eq!(failed.len(), 2);
    assert!(failed.iter().all(|row| !row.last().unwrap().is_empty()));

    // Nothing readable at all is an error, after the CSV with the reasons.
    let output = common::cellnets(
        dir.path(),
        &[
            "predict",
            run.to_str().unwrap(),
            path("notes.png").to_str().unwrap(),
            "--output",
            csv.to_str().unwrap(),
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("none of the 1 files could be predicted"),
        "{stderr}"
    );
    assert!(!stderr.contains("panic"), "{stderr}");
}

#[test]
fn a_run_that_is_not_finished_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let output = common::cellnets(dir.path(), &["predict", "out/cnn/run", "x.png"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is not a finished run"), "{stderr}");
}

#[test]
fn a_run_recorded_without_its_input_shape_has_it_read_off_its_weights() {
    let dir = tempfile::tempdir().unwrap();
    let run = trained_run(dir.path());
    let recorded = SavedRun::open(&run).unwrap().input_shape().unwrap();
    assert_eq!(
        (recorded.channels, recorded.height, recorded.classes),
        (3, 8, 4)
    );
    // As result.yaml was written before the shape was recorded; the toy file is 8x8,
    // which its dataset's image size must then say.
    let path = run.join("result.yaml");
    let mut result: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    result.as_mapping_mut().unwrap().remove("input").unwrap();
    result["plan"]["dataset"]["image_size"] = 8.into();
    std::fs::write(&path, serde_yaml::to_string(&result).unwrap()).unwrap();
    assert_eq!(
        SavedRun::open(&run).unwrap().input_shape().unwrap(),
        recorded
    );
}

#[test]
fn the_exported_torchscript_gives_the_models_logits_for_any_batch_size() {
    let dir = tempfile::tempdir().unwrap();
    let run = trained_run(dir.path());
    let file = dir.path().join("model.pt");
    let output = common::cellnets(
        dir.path(),
        &[
            "export",
            run.to_str().unwrap(),
            "--output",
            file.to_str().unwrap(),
        ],
    );
    assert!(output.status.success(), "{output:?}");

    let saved = SavedRun::open(&run).unwrap();
    let data = common::load_toy(dir.path()).unwrap();
    let expected = cellnets::train::predict(
        saved
            .load(data.input, Device::Cpu)
            .unwrap()
            .network
            .as_ref(),
        &data.test.images,
    );
    let module = tch::CModule::load(&file).unwrap();
    let images = tch::Tensor::cat(&data.test.images.batches().collect::<Vec<_>>(), 0);
    let logits = tch::no_grad(|| module.forward_ts(&[&images]).unwrap());
    assert_eq!(logits.size(), [data.test.len(), common::CLASSES]);
    let difference = (logits - expected).abs().max().double_value(&[]);
    assert!(difference < 1e-5, "{difference}");

    let onnx = common::cellnets(
        dir.path(),
        &["export", run.to_str().unwrap(), "--format", "onnx"],
    );
    assert!(!onnx.status.success());
    let stderr = String::from_utf8_lossy(&onnx.stderr);
    assert!(stderr.contains("ONNX export is not available"), "{stderr}");
}
