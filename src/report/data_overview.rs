//! The data as the study showed it: class counts of train vs test, the holdout's
//! train vs val class rates, and one sample per class.

use super::markdown::{count, rate, table};
use crate::data::Dataset;
use crate::figures::{self, GroupedBars, Montage, Picture};
use crate::files::write_table;
use crate::manifest::DatasetSpec;
use crate::study;
use anyhow::{Context, Result};
use std::path::Path;
use tch::Tensor;

/// Writes `class_counts.csv` and the figures into `dir`; returns the markdown section,
/// whose links are relative to `link_base`.
pub fn render(spec: &DatasetSpec, data: &Dataset, dir: &Path, link_base: &str) -> Result<String> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let classes = data.input.classes as usize;
    let names = crate::image_folder::class_names(spec, classes);
    let official_train = Tensor::cat(&[&data.train.labels, &data.val.labels], 0);
    let splits = [
        ("train", counts(&official_train, classes)?),
        ("test", counts(&data.test.labels, classes)?),
        ("holdout_train", counts(&data.train.labels, classes)?),
        ("holdout_val", counts(&data.val.labels, classes)?),
    ];
    let rates = |counts: &[u64]| -> Vec<f64> {
        let total: u64 = counts.iter().sum();
        counts
            .iter()
            .map(|&n| n as f64 / total.max(1) as f64)
            .collect()
    };

    let header = ["dataset", "split", "class", "name", "count", "rate"].map(String::from);
    let mut rows = Vec::new();
    for (split, counts) in &splits {
        for (class, (n, share)) in counts.iter().zip(rates(counts)).enumerate() {
            rows.push(vec![
                spec.name.clone(),
                split.to_string(),
                class.to_string(),
                names[class].clone(),
                n.to_string(),
                share.to_string(),
            ]);
        }
    }
    write_table(&dir.join("class_counts.csv"), &header, &rows)?;

    let title = spec.file_name();
    let series = |picked: &[usize], transform: &dyn Fn(&[u64]) -> Vec<f64>| {
        picked
            .iter()
            .map(|&i| (splits[i].0.replace('_', " "), transform(&splits[i].1)))
            .collect()
    };
    let as_f64 = |counts: &[u64]| counts.iter().map(|&n| n as f64).collect();
    figures::save(
        &GroupedBars {
            title: format!("{title}: images per class"),
            y_desc: "images".into(),
            categories: names.clone(),
            series: series(&[0, 1], &as_f64),
        },
        dir,
        "class_counts",
    )?;
    figures::save(
        &GroupedBars {
            title: format!("{title}: class rates of the holdout"),
            y_desc: "share of the split".into(),
            categories: names.clone(),
            series: series(&[2, 3], &rates),
        },
        dir,
        "holdout_rates",
    )?;
    let labels = Vec::<i64>::try_from(data.train.labels.to_device(tch::Device::Cpu))?;
    let mut tiles = Vec::new();
    for (class, name) in names.iter().enumerate() {
        if let Some(i) = labels.iter().position(|&label| label == class as i64) {
            let picture = Picture::from_tensor(&data.train.images.get(i as i64))?;
            tiles.push((name.clone(), picture));
        }
    }
    figures::save_png(
        &Montage {
            title: format!("{title}: the first training image of each class"),
            tiles,
        },
        dir,
        "samples",
    )?;

    let study = study::study();
    let sizes: Vec<(&str, u64)> = splits
        .iter()
        .map(|(split, counts)| (*split, counts.iter().sum()))
        .collect();
    let mut section = format!(
        "## Data: {title}\n\n{} classes, {}x{} pixels, {} channel(s). Split sizes: {}.\n\n",
        classes,
        data.input.height,
        data.input.width,
        data.input.channels,
        sizes
            .iter()
            .map(|(split, n)| match study.split_sizes.get(*split) {
                Some(&theirs) if spec.name == study.dataset => {
                    format!(
                        "{} {} (study {})",
                        split.replace('_', " "),
                        count(*n),
                        count(theirs)
                    )
                }
                _ => format!("{} {}", split.replace('_', " "), count(*n)),
            })
            .collect::<Vec<_>>()
            .join(", ")
    );
    let rows: Vec<Vec<String>> = names
        .iter()
        .enumerate()
        .map(|(class, name)| {
            let [train, test, holdout_train, holdout_val] = &splits;
            vec![
                format!("{class} {name}"),
                count(train.1[class]),
                count(test.1[class]),
                rate(rates(&holdout_train.1)[class]),
                rate(rates(&holdout_val.1)[class]),
            ]
        })
        .collect();
    section += &table(
        &[
            "class",
            "train",
            "test",
            "holdout train rate",
            "holdout val rate",
        ],
        &rows,
    );
    section += &format!(
        "\n![class counts]({link_base}/class_counts.png)\n\n\
         ![holdout rates]({link_base}/holdout_rates.png)\n\n\
         ![one sample per class]({link_base}/samples.png)\n\n\
         Counts as CSV: [class_counts.csv]({link_base}/class_counts.csv)\n\n"
    );
    Ok(section)
}

fn counts(labels: &Tensor, classes: usize) -> Result<Vec<u64>> {
    let counts = labels
        .to_device(tch::Device::Cpu)
        .bincount::<Tensor>(None, classes as i64);
    Ok(Vec::<i64>::try_from(counts)?
        .into_iter()
        .map(|n| n as u64)
        .collect())
}
