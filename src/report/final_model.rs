//! The test results of a stage's winner, when it is a final model: its metrics beside
//! the study's, both confusion matrices, per-class scores, and the error analysis of its
//! most confident mistakes.

use super::markdown::{count, metric, table};
use super::stage::StageInput;
use crate::data::Dataset;
use crate::figures::{self, HeatMap, MistakePanel, Picture};
use crate::manifest::Stage;
use crate::metrics::{macro_auc, Confusion, TestReport};
use crate::saved::SavedRun;
use crate::study::{self, StudyModel};
use anyhow::Result;

pub fn test_section(
    input: &StageInput,
    saved: &SavedRun,
    report: &TestReport,
    names: &[String],
    study_model: Option<&StudyModel>,
) -> Result<String> {
    let link = input.link;
    let confusion = &report.confusion;
    let summary = &saved.finished.summary;
    let mut md = format!(
        "### Test results of the winner, {}\n\nThe best epoch's weights ({}) on the test split ({} images).\n\n",
        saved.label(),
        summary.best.as_ref().map_or("–".into(), |b| format!("epoch {}", b.epoch)),
        count(report.truth.len() as u64)
    );
    let theirs = study_model.filter(|_| input.is_final && input.stage.report.study.is_some());
    let study_test = theirs.map(|model| &model.test);
    let params =
        |ours: i64, theirs: Option<i64>| vec![count(ours), theirs.map_or("–".into(), count)];
    let mut rows = vec![
        [
            "accuracy".to_string(),
            metric(Some(confusion.accuracy())),
            metric(study_test.map(|t| t.accuracy)),
        ]
        .to_vec(),
        [
            "balanced accuracy".to_string(),
            metric(Some(confusion.balanced_accuracy())),
            metric(study_test.and_then(|t| t.balanced_accuracy)),
        ]
        .to_vec(),
        [
            "macro F1".to_string(),
            metric(Some(confusion.macro_f1())),
            "–".into(),
        ]
        .to_vec(),
        [
            "one-vs-rest AUC".to_string(),
            metric(Some(macro_auc(&report.aucs))),
            "–".into(),
        ]
        .to_vec(),
        ["loss".to_string(), metric(Some(report.loss)), "–".into()].to_vec(),
    ];
    let mut trainable = vec!["trainable parameters".to_string()];
    trainable.extend(params(
        summary.trainable_params,
        theirs.and_then(|m| m.trainable_params),
    ));
    rows.push(trainable);
    if summary.frozen_params > 0 || theirs.is_some_and(|m| m.frozen_params.is_some()) {
        let mut frozen = vec!["frozen parameters".to_string()];
        frozen.extend(params(
            summary.frozen_params,
            theirs.and_then(|m| m.frozen_params),
        ));
        rows.push(frozen);
    }
    let study_header = theirs.map_or("study".into(), |m| format!("{} ({})", m.title, m.source));
    md += &table(&["", "cellnets", &study_header], &rows);

    let title = format!("{}: test confusion", saved.label());
    figures::save(
        &HeatMap::confusion(title, &confusion.matrix, names),
        input.dir,
        "confusion",
    )?;
    let study_confusion = theirs.and_then(|m| {
        m.confusion
            .as_ref()
            .map(|c| Confusion { matrix: c.clone() })
    });
    match &study_confusion {
        Some(study) => {
            let title = "the study: test confusion".to_string();
            let names = &study::study().class_names;
            figures::save(
                &HeatMap::confusion(title, &study.matrix, names),
                input.dir,
                "confusion-study",
            )?;
            md += "\n";
            md += &table(
                &["cellnets", "the study"],
                &[vec![
                    format!("![confusion]({link}/confusion.png)"),
                    format!("![study confusion]({link}/confusion-study.png)"),
                ]],
            );
        }
        None => md += &format!("\n![confusion]({link}/confusion.png)\n"),
    }
    md += "\nPer class (precision = right among those predicted as the class, recall = right among those truly of it):\n\n";
    let study_scores = study_confusion.as_ref().map(Confusion::per_class);
    let mut header = vec!["class", "support", "precision", "recall", "F1", "AUC"];
    if study_scores.is_some() {
        header.extend(["study precision", "study recall"]);
    }
    let rows: Vec<Vec<String>> = confusion
        .per_class()
        .iter()
        .enumerate()
        .map(|(class, scores)| {
            let mut row = vec![
                format!("{class} {}", names[class]),
                count(scores.support),
                metric(Some(scores.precision)),
                metric(Some(scores.recall)),
                metric(Some(scores.f1)),
                metric(report.aucs[class]),
            ];
            if let Some(study) = &study_scores {
                row.push(metric(study.get(class).map(|s| s.precision)));
                row.push(metric(study.get(class).map(|s| s.recall)));
            }
            row
        })
        .collect();
    md += &table(&header, &rows);
    md += "\n";
    Ok(md)
}

pub fn mistakes_section(
    input: &StageInput,
    saved: &SavedRun,
    report: &TestReport,
    names: &[String],
    data: &Dataset,
    train_labels: &[i64],
) -> Result<String> {
    let mistakes = report.most_confident_mistakes(input.stage.report.mistakes);
    if mistakes.is_empty() {
        return Ok(format!(
            "{} classifies every test image correctly: no mistakes to show.\n\n",
            saved.label()
        ));
    }
    let mut md = format!(
        "### The {} most confident mistakes of {}\n\nEach: the test image, the first training image of the predicted class and of the true class, and the predicted probabilities (green: true class, red: predicted).\n\n",
        mistakes.len(),
        saved.label()
    );
    let example = |class: i64| -> Result<Picture> {
        let index = train_labels
            .iter()
            .position(|&label| label == class)
            .unwrap_or(0);
        Picture::from_tensor(&data.train.images.get(index as i64))
    };
    let mut rows = Vec::new();
    for (rank, &index) in mistakes.iter().enumerate() {
        let (truth, predicted) = (report.truth[index], report.predicted[index]);
        let probabilities = report.probabilities[index].clone();
        let confidence = probabilities[predicted as usize];
        let panel = MistakePanel {
            title: format!(
                "test image {index}: true {}, predicted {} ({confidence:.2})",
                names[truth as usize], names[predicted as usize]
            ),
            sample: Picture::from_tensor(&data.test.images.get(index as i64))?,
            predicted_example: example(predicted)?,
            true_example: example(truth)?,
            class_names: names.to_vec(),
            probabilities,
            predicted: predicted as usize,
            truth: truth as usize,
        };
        let name = format!("mistake-{}", rank + 1);
        figures::save_png(&panel, input.dir, &name)?;
        rows.push(vec![
            (rank + 1).to_string(),
            index.to_string(),
            names[truth as usize].clone(),
            names[predicted as usize].clone(),
            metric(Some(confidence)),
            format!("![{name}]({}/{name}.png)", input.link),
        ]);
    }
    md += &table(
        &[
            "rank",
            "test image",
            "true",
            "predicted",
            "probability",
            "figure",
        ],
        &rows,
    );
    md += "\n";
    Ok(md)
}

pub fn final_row_of(
    stage: &Stage,
    saved: &SavedRun,
    report: &TestReport,
    study_model: Option<&StudyModel>,
) -> Vec<String> {
    let confusion = &report.confusion;
    let summary = &saved.finished.summary;
    vec![
        format!("`{}`: {}", stage.name, saved.finished.plan.name),
        format!(
            "{} of {}",
            summary.epochs, saved.finished.plan.training.epochs
        ),
        metric(Some(confusion.accuracy())),
        metric(study_model.map(|m| m.test.accuracy)),
        metric(Some(confusion.balanced_accuracy())),
        metric(study_model.and_then(|m| m.test.balanced_accuracy)),
        metric(Some(confusion.macro_f1())),
        metric(Some(macro_auc(&report.aucs))),
        count(summary.trainable_params),
        study_model.map_or(String::new(), |m| m.title.clone()),
    ]
}
