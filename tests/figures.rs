//! Every kind of figure renders to a PNG that decodes at the size it announces, and to
//! an SVG. Set CELLNETS_FIGURES_DIR to keep them for a look.

use crate::common;

use cellnets::figures::{
    save, save_png, CategoryLines, Curves, Figure, GroupedBars, HeatMap, MistakePanel, Montage,
    Panel, Picture,
};
use cellnets::train::EpochRecord;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

fn output_dir() -> (Option<tempfile::TempDir>, PathBuf) {
    match std::env::var_os("CELLNETS_FIGURES_DIR") {
        Some(dir) => {
            std::fs::create_dir_all(&dir).unwrap();
            (None, PathBuf::from(dir))
        }
        None => {
            let temp = tempfile::tempdir().unwrap();
            let path = temp.path().to_path_buf();
            (Some(temp), path)
        }
    }
}

fn png_size(path: &Path) -> (u32, u32) {
    let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    let reader = decoder.read_info().unwrap();
    let info = reader.info();
    (info.width, info.height)
}

fn check(figure: &impl Figure, dir: &Path, name: &str) {
    let png = save(figure, dir, name).unwrap();
    assert_eq!(png_size(&png), figure.size(), "{name}");
    let svg = std::fs::read_to_string(dir.join(format!("{name}.svg"))).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
        "{name}"
    );
}

fn names() -> Vec<String> {
    ["basophil", "eosinophil", "erythroblast", "imm. granulocyte"]
        .map(String::from)
        .to_vec()
}

#[test]
fn charts_render_as_png_and_svg() {
    let (_keep, dir) = output_dir();
    let epochs: Vec<EpochRecord> = (1..=12)
        .map(|epoch| {
            let t = epoch as f64;
            EpochRecord {
                epoch,
                train_loss: 2.0 / t,
                train_accuracy: 1.0 - 0.5 / t,
                val_loss: 2.2 / t + 0.01 * t,
                val_accuracy: 0.95 - 0.5 / t,
                seconds: 1.0,
                val_auc: 0.99 - 0.3 / t,
                val_balanced_accuracy: 0.9 - 0.5 / t,
                cpu_seconds: 1.0,
                cumulative_seconds: 1.0,
                cumulative_cpu_seconds: 1.0,
            }
        })
        .collect();
    let curves = Curves {
        title: "hidden/hidden=256".into(),
        epochs,
        best_epoch: Some(9),
    };
    check(&curves, &dir, "curves");

    let one_epoch = Curves {
        title: "a single epoch, with a NaN loss".into(),
        epochs: vec![EpochRecord {
            epoch: 1,
            train_loss: f64::NAN,
            train_accuracy: 0.1,
            val_loss: f64::INFINITY,
            val_accuracy: 0.1,
            seconds: 1.0,
            val_auc: f64::NAN,
            val_balanced_accuracy: 0.1,
            cpu_seconds: 1.0,
            cumulative_seconds: 1.0,
            cumulative_cpu_seconds: 1.0,
        }],
        best_epoch: None,
    };
    check(&one_epoch, &dir, "curves-degenerate");

    let stepwise = CategoryLines {
        title: "stage hidden: best epoch per run".into(),
        x_desc: "hidden".into(),
        categories: ["256", "512", "1024"].map(String::from).to_vec(),
        panels: vec![
            Panel {
                y_desc: "best val accuracy".into(),
                values: vec![0.81, 0.84, 0.845],
            },
            Panel {
                y_desc: "best val loss".into(),
                values: vec![0.55, 0.5, f64::NAN],
            },
        ],
        highlight: Some(2),
    };
    check(&stepwise, &dir, "stepwise");

    let bars = GroupedBars {
        title: "class counts".into(),
        y_desc: "images".into(),
        categories: names(),
        series: vec![
            ("train".into(), vec![852.0, 2181.0, 1085.0, 2026.0]),
            ("test".into(), vec![244.0, 624.0, 311.0, 579.0]),
        ],
    };
    check(&bars, &dir, "bars");

    let matrix = vec![
        vec![177, 3, 0, 43],
        vec![1, 613, 0, 3],
        vec![0, 0, 0, 0],
        vec![34, 26, 3, 447],
    ];
    check(
        &HeatMap::confusion("confusion (an empty class)".into(), &matrix, &names()),
        &dir,
        "confusion",
    );
    let grid = HeatMap::grid(
        "best val accuracy".into(),
        ("kernel size".into(), vec!["3".into(), "5".into()]),
        ("kernels".into(), vec!["8".into(), "16".into(), "32".into()]),
        &[
            vec![Some(0.87), Some(0.88), None],
            vec![Some(0.88), Some(0.89), Some(0.9)],
        ],
    );
    check(&grid, &dir, "grid");
}

#[test]
fn pictures_render_at_their_size() {
    let (_keep, dir) = output_dir();
    // Each picture's noise from a seed of its own: 0, 1, 2, ...
    let drawn = std::cell::Cell::new(0);
    let picture = |channels: i64| {
        let noise = {
            let _generator = common::torch_generator();
            tch::manual_seed(drawn.replace(drawn.get() + 1));
            Tensor::rand([channels, 28, 28], (Kind::Float, tch::Device::Cpu))
        };
        Picture::from_tensor(&noise).unwrap()
    };
    let grey = picture(1);
    assert_eq!((grey.width, grey.height, grey.rgb.len()), (28, 28, 784));
    assert!(grey.rgb.iter().all(|[r, g, b]| r == g && g == b));

    let montage = Montage {
        title: "one sample per class".into(),
        tiles: names().into_iter().map(|name| (name, picture(3))).collect(),
    };
    let png = save_png(&montage, &dir, "montage").unwrap();
    assert_eq!(png_size(&png), montage.size());

    let mistake = MistakePanel {
        title: "test image 17: true basophil, predicted imm. granulocyte (0.91)".into(),
        sample: picture(3),
        predicted_example: picture(3),
        true_example: picture(1),
        class_names: names(),
        probabilities: vec![0.05, 0.01, 0.03, 0.91],
        predicted: 3,
        truth: 0,
    };
    let png = save_png(&mistake, &dir, "mistake").unwrap();
    assert_eq!(png_size(&png), mistake.size());
}
