//! The data as the study showed it: class counts of train vs test, the class rates of
//! what trains and what validates (the holdout's two parts, or the official train and
//! val splits), and one sample per class.

use crate::figures::{GroupedBars, Montage};
use crate::report::gather::{splits, DataOverview};
use crate::report::markdown::{count, rate, table};
use crate::report::output::{Drawing, Section, TableFile, REPORT_DIR};
use crate::study::reference;

/// The data file's section, with `class_counts.csv` and its figures.
pub fn section(data: &DataOverview) -> Section {
    let stem = data.spec.file_name().trim_end_matches(".npz").to_string();
    let folder = format!("{REPORT_DIR}/data-{stem}");
    let mut section = Section::text(summary(data) + &class_table(data));
    section.markdown += &format!(
        "\n![class counts]({folder}/class_counts.png)\n\n\
         ![holdout rates]({folder}/holdout_rates.png)\n\n\
         ![one sample per class]({folder}/samples.png)\n\n\
         Counts as CSV: [class_counts.csv]({folder}/class_counts.csv)\n\n"
    );
    section.tables.push(class_counts_csv(data, &folder));
    for (name, drawing) in figures(data) {
        section.figure(&folder, name, drawing);
    }
    section
}

/// Each class's share of a split's `images` (for labels: the share that has it).
fn rates(counts: &[u64], images: u64) -> Vec<f64> {
    counts
        .iter()
        .map(|&n| n as f64 / images.max(1) as f64)
        .collect()
}

/// The heading, the image shape, and the split sizes beside the study's.
fn summary(data: &DataOverview) -> String {
    let study = reference::study();
    let on_study_data = data.spec.name == study.dataset;
    let sizes: Vec<String> = splits(data.spec.validation)
        .iter()
        .zip(data.sizes)
        .map(|(split, size)| {
            let ours = format!("{} {}", split.replace('_', " "), count(size));
            match study.split_sizes.get(*split) {
                Some(&theirs) if on_study_data => format!("{ours} (study {})", count(theirs)),
                _ => ours,
            }
        })
        .collect();
    let input = &data.input;
    format!(
        "## Data: {}\n\n{} {} ({} task), {}x{} pixels, {} channel(s). Split sizes: {}.\n\n",
        data.spec.file_name(),
        input.classes,
        data.task.outputs_noun(),
        data.task,
        input.height,
        input.width,
        input.channels,
        sizes.join(", ")
    )
}

fn class_table(data: &DataOverview) -> String {
    let [train, test, training, validating] = &data.counts;
    let train_rates = rates(training, data.sizes[2]);
    let val_rates = rates(validating, data.sizes[3]);
    let rows: Vec<Vec<String>> = data
        .class_names
        .iter()
        .enumerate()
        .map(|(class, name)| {
            vec![
                format!("{class} {name}"),
                count(train[class]),
                count(test[class]),
                rate(train_rates[class]),
                rate(val_rates[class]),
            ]
        })
        .collect();
    let [first, _, training, validating] =
        splits(data.spec.validation).map(|s| s.replace('_', " "));
    let header = [
        data.task.output_noun().to_string(),
        first,
        "test".into(),
        format!("{training} rate"),
        format!("{validating} rate"),
    ];
    table(&header.each_ref().map(String::as_str), &rows)
}

/// A row per split and class, for plotting elsewhere (the notebook reads it).
fn class_counts_csv(data: &DataOverview, folder: &str) -> TableFile {
    let mut rows = Vec::new();
    let names = splits(data.spec.validation);
    for ((split, counts), &size) in names.iter().zip(&data.counts).zip(&data.sizes) {
        for (class, (n, share)) in counts.iter().zip(rates(counts, size)).enumerate() {
            rows.push(vec![
                data.spec.name.clone(),
                split.to_string(),
                class.to_string(),
                data.class_names[class].clone(),
                n.to_string(),
                share.to_string(),
            ]);
        }
    }
    TableFile {
        path: format!("{folder}/class_counts.csv"),
        header: ["dataset", "split", "class", "name", "count", "rate"]
            .map(String::from)
            .into(),
        rows,
    }
}

/// Counts of train vs test, rates of the parts that train and validate (the holdout's
/// two, or the official train and val splits), and one sample per class.
fn figures(data: &DataOverview) -> [(&'static str, Drawing); 3] {
    let title = data.spec.file_name();
    let names = splits(data.spec.validation);
    let series = |picked: [usize; 2], values: fn(&[u64], u64) -> Vec<f64>| {
        picked
            .iter()
            .map(|&i| {
                let name = names[i].replace('_', " ");
                (name, values(&data.counts[i], data.sizes[i]))
            })
            .collect()
    };
    let counts = GroupedBars {
        title: format!("{title}: images per class"),
        y_desc: "images".into(),
        categories: data.class_names.clone(),
        series: series([0, 1], |counts, _| {
            counts.iter().map(|&n| n as f64).collect()
        }),
    };
    let holdout = GroupedBars {
        title: format!("{title}: class rates of what trains and validates"),
        y_desc: "share of the split".into(),
        categories: data.class_names.clone(),
        series: series([2, 3], rates),
    };
    let samples = Montage {
        title: format!("{title}: the first training image of each class"),
        tiles: data.samples.clone(),
    };
    [
        ("class_counts", Drawing::GroupedBars(counts)),
        ("holdout_rates", Drawing::GroupedBars(holdout)),
        ("samples", Drawing::Montage(samples)),
    ]
}
