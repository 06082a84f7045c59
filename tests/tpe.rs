//! `sample: {method: tpe}` through the real binary: with one worker the same seed
//! proposes the same configurations, each seeing exactly the runs before it finished;
//! two `--shard`ed processes started at the same instant, and `--jobs 2`, train each
//! proposal once and leave none behind; a worker SIGKILLed between proposals is rerun
//! into the same study; under `halving` the model is fitted on the rung with enough
//! results (BOHB); bad TPE settings are refused before anything trains.

use crate::common;

use cellnets::outputs::proposals::ProposalRecord;
use cellnets::study::search::tpe::Drawn;
use common::outputs::{cellnets, check_consistent, finish, spawn_worker, study_dir, summary_rows};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

const COUNT: usize = 8;

fn study(extra: &str) -> String {
    format!(
        "  - name: tpe
    model: {{kind: mlp, hidden: 8}}
    training: {{epochs: 1}}
    sample:
      method: tpe
      count: {COUNT}
      seed: 3
      n_startup_trials: 3
      space:
        learning_rate: {{loguniform: [0.0001, 0.5]}}
        hidden: {{int: [2, 32]}}
        activation: {{choice: [relu, sigmoid]}}
{extra}"
    )
}

fn run(dir: &Path, args: &[&str]) -> String {
    finish(spawn_worker(dir, args))
}

/// The stage's series of proposal files, in order.
fn proposal_files(out: &Path) -> Vec<PathBuf> {
    let series: Vec<PathBuf> = std::fs::read_dir(out.join("tpe/.proposals"))
        .map(|entries| entries.flatten().map(|entry| entry.path()).collect())
        .unwrap_or_default();
    assert!(series.len() <= 1, "one series of proposals: {series:?}");
    let Some(series) = series.first() else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(series)
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        // Not the hidden temporary file a record is written to before its rename.
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy();
            !name.starts_with('.') && name.ends_with(".yaml")
        })
        .collect();
    files.sort();
    files
}

fn proposals(out: &Path) -> Vec<ProposalRecord> {
    proposal_files(out)
        .iter()
        .map(|path| serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap())
        .collect()
}

/// Every proposal drawn, in order, its run finished once and holding its record.
fn check_every_proposal_trained_once(out: &Path) -> Vec<ProposalRecord> {
    let records = proposals(out);
    assert_eq!(records.len(), COUNT);
    for (index, record) in records.iter().enumerate() {
        assert_eq!(record.index, index);
        assert!(record.run.starts_with(&format!("sample={},", index + 1)));
        let folder = out.join("tpe").join(&record.run);
        assert!(
            folder.join("result.yaml").exists(),
            "{} not trained",
            record.run
        );
        let copy: ProposalRecord =
            serde_yaml::from_str(&std::fs::read_to_string(folder.join("proposal.yaml")).unwrap())
                .unwrap();
        assert_eq!(&copy, record);
    }
    assert_eq!(check_consistent(out), COUNT);
    assert_eq!(summary_rows(out, "tpe"), COUNT);
    assert!(out.join("tpe/winner.yaml").exists());
    records
}

#[test]
fn one_worker_proposes_the_same_configurations_from_exactly_the_runs_before() {
    let first = study_dir(&study(""));
    let stderr = run(first.path(), &[]);
    let records = check_every_proposal_trained_once(&first.path().join("out"));
    for (index, record) in records.iter().enumerate() {
        // Proposal k saw runs 0..k-1, every one finished.
        let saw: Vec<&str> = record.saw.iter().map(|seen| seen.run.as_str()).collect();
        let before: Vec<&str> = records[..index].iter().map(|r| r.run.as_str()).collect();
        assert_eq!(saw, before);
        assert!(record.saw.iter().all(|seen| seen.value.is_some()));
        let expected_random = index < 3;
        assert_eq!(
            record.drawn == Drawn::Startup,
            expected_random,
            "{record:?}"
        );
    }
    assert!(matches!(records[7].drawn, Drawn::Model { good: 1, bad: 6 }));
    assert!(
        stderr.contains("proposed by TPE from the best 1 of 3"),
        "{stderr}"
    );

    let second = study_dir(&study(""));
    run(second.path(), &[]);
    assert_eq!(proposals(&second.path().join("out")), records);

    // A rerun draws nothing new and trains nothing.
    let again = run(first.path(), &[]);
    assert!(!again.contains("proposed"), "{again}");
    assert_eq!(proposals(&first.path().join("out")), records);

    // Another seed proposes another series, kept apart.
    let other = study_dir(&study("").replace("seed: 3", "seed: 4"));
    run(other.path(), &[]);
    assert_ne!(proposals(&other.path().join("out")), records);
}

#[test]
fn shards_started_together_and_jobs_train_each_proposal_once() {
    for round in 0..2 {
        let dir = study_dir(&study(""));
        let children: Vec<Child> = ["0/2", "1/2"]
            .iter()
            .map(|shard| spawn_worker(dir.path(), &["--shard", shard]))
            .collect();
        let logs: Vec<String> = children.into_iter().map(finish).collect();
        let records = check_every_proposal_trained_once(&dir.path().join("out"));
        let trained: usize = logs
            .iter()
            .map(|log| log.matches(" epoch 1/1:").count())
            .sum();
        assert_eq!(trained, COUNT, "round {round}: {logs:?}");
        // Pending proposals are seen, never lost: each proposal saw every one before it.
        for (index, record) in records.iter().enumerate() {
            assert_eq!(record.saw.len(), index, "round {round}: {record:?}");
        }
    }
    let dir = study_dir(&study(""));
    let stderr = run(dir.path(), &["--jobs", "2"]);
    check_every_proposal_trained_once(&dir.path().join("out"));
    assert_eq!(stderr.matches(" epoch 1/1:").count(), COUNT, "{stderr}");
}

#[test]
fn a_worker_killed_between_proposals_is_rerun_into_the_same_study() {
    let straight = study_dir(&study(""));
    run(straight.path(), &[]);
    let want = proposals(&straight.path().join("out"));

    let dir = study_dir(&study(""));
    let out = dir.path().join("out");
    let mut victim = spawn_worker(dir.path(), &[]);
    let start = Instant::now();
    // Killed while the fifth proposal's run trains: drawn, the sixth not yet.
    let fifth_trains = |out: &Path| {
        proposals(out).get(4).is_some_and(|fifth| {
            let folder = out.join("tpe").join(&fifth.run);
            folder.join("epochs.csv").exists()
        })
    };
    while !fifth_trains(&out) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no fifth proposal"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    victim.kill().unwrap();
    victim.wait().unwrap();
    let drawn = proposals(&out);
    assert!((5..COUNT).contains(&drawn.len()), "{}", drawn.len());
    let stderr = run(dir.path(), &[]);
    let records = check_every_proposal_trained_once(&out);
    assert_eq!(
        &records[..drawn.len()],
        &drawn[..],
        "the drawn ones are reused"
    );
    assert_eq!(records, want, "and the study ends as an uninterrupted one");
    assert_eq!(
        stderr.matches("proposed").count(),
        COUNT - drawn.len(),
        "{stderr}"
    );
}

#[test]
fn under_halving_the_model_is_fitted_on_the_first_rung_with_enough_results() {
    let stage = study("    halving: {min_epochs: 1, reduction: 2}\n")
        .replace("epochs: 1}", "epochs: 4}")
        .replace(
            "n_startup_trials: 3",
            "n_startup_trials: 4\n      random_fraction: 0",
        );
    let dir = study_dir(&stage);
    run(dir.path(), &[]);
    let out = dir.path().join("out");
    let records = proposals(&out);
    assert_eq!(records.len(), COUNT);
    for (index, record) in records.iter().enumerate() {
        // Sync halving: every run trains to the first rung before it decides, so each
        // proposal sees the runs before it at epoch 1, and the model fits that rung
        // once 4 (the startup results, above 3 keys + 1) are there.
        assert_eq!(record.saw.len(), if index < 4 { 0 } else { index });
        match index {
            0..4 => assert_eq!((&record.drawn, record.rung), (&Drawn::Startup, None)),
            _ => assert!(
                matches!(record.drawn, Drawn::Model { .. }) && record.rung == Some(1),
                "{record:?}"
            ),
        }
        assert!(out
            .join("tpe")
            .join(&record.run)
            .join("epochs.csv")
            .exists());
    }
    assert!(out.join("tpe/winner.yaml").exists());
    let summary = std::fs::read_to_string(out.join("tpe/summary.csv")).unwrap();
    // Rungs at 1, 2 and 4: 8 runs, 4 go on to epoch 2, 2 to the budget.
    assert_eq!(summary.matches(",halted,").count(), COUNT - 2, "{summary}");
}

#[test]
fn under_asha_every_proposal_is_raced_and_the_model_may_fit_a_higher_rung() {
    let stage = study("    halving: {min_epochs: 1, reduction: 2, mode: async}\n")
        .replace("epochs: 1}", "epochs: 4}")
        .replace(
            "n_startup_trials: 3",
            "n_startup_trials: 3\n      random_fraction: 0",
        );
    let dir = study_dir(&stage);
    run(dir.path(), &[]);
    let out = dir.path().join("out");
    let records = proposals(&out);
    assert_eq!(records.len(), COUNT);
    for record in &records {
        // Promotions come first under ASHA, so a proposal may see a rung above the
        // first; it always fits one of the stage's rungs, and only with a model.
        let modelled = matches!(record.drawn, Drawn::Model { .. });
        assert_eq!(modelled, record.rung.is_some(), "{record:?}");
        assert!(record.rung.is_none_or(|rung| [1, 2, 4].contains(&rung)));
        assert!(out
            .join("tpe")
            .join(&record.run)
            .join("epochs.csv")
            .exists());
    }
    assert!(records.iter().any(|record| record.rung.is_some()));
    assert!(out.join("tpe/winner.yaml").exists());
}

#[test]
fn bad_tpe_settings_are_refused_before_anything_trains() {
    for (change, expected) in [
        (
            ("method: tpe", "method: annealing"),
            "unknown variant `annealing`",
        ),
        (
            ("n_startup_trials: 3", "n_startup_trials: 8"),
            "not below `count: 8`",
        ),
        (
            ("n_startup_trials: 3", "n_startup_trials: 0"),
            "at least one result",
        ),
        (
            (
                "n_startup_trials: 3",
                "n_startup_trials: 3\n      n_ei_candidates: 0",
            ),
            "n_ei_candidates: 0",
        ),
        (
            (
                "n_startup_trials: 3",
                "n_startup_trials: 3\n      random_fraction: 0.5",
            ),
            "without `halving`",
        ),
        (("method: tpe", "method: random"), "add `method: tpe`"),
        (
            ("{int: [2, 32]}", "{int: [8, 8]}"),
            "every key has one value",
        ),
        (
            (
                "    training:",
                "    grid: {dropout: [0.0, 0.5]}\n    training:",
            ),
            "move the grid's keys into `sample.space`",
        ),
    ] {
        let stages = study("")
            .replace(change.0, change.1)
            .replace(
                "{loguniform: [0.0001, 0.5]}",
                if change.1.contains("[8, 8]") {
                    "{choice: [0.01]}"
                } else {
                    "{loguniform: [0.0001, 0.5]}"
                },
            )
            .replace(
                "{choice: [relu, sigmoid]}",
                if change.1.contains("[8, 8]") {
                    "{choice: [relu]}"
                } else {
                    "{choice: [relu, sigmoid]}"
                },
            );
        let dir = study_dir(&stages);
        let output = cellnets(dir.path()).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{change:?} ran: {stderr}");
        assert!(stderr.contains(expected), "{change:?}: {stderr}");
        assert!(!dir.path().join("out").exists(), "{change:?} wrote out/");
    }
}
