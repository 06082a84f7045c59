//! Successive halving through the real binary: the runs halted at each rung are the
//! ones the rule picks from the recorded values, the winner's epoch table equals a
//! straight run of its settings bit for bit, whether one process, two `--shard`ed ones,
//! `--jobs 2` or a SIGKILLed and rerun worker did the work; ASHA promotes only the
//! best so far; sampled configurations are reproducible, and a larger budget or another
//! reduction continues halted runs instead of training them again.

use crate::common;

use cellnets::storage::files::read_table;
use common::outputs::{
    assert_same_metrics, cellnets, check_consistent, finish, metrics, spawn_worker, study_dir,
};
use std::path::Path;

const RATES: [&str; 6] = ["0.001", "0.003", "0.01", "0.03", "0.1", "0.3"];

fn study(halving: &str) -> String {
    format!(
        "  - name: rates
    model: {{kind: mlp, hidden: 16}}
    training: {{epochs: 9}}
    grid: {{learning_rate: [{}]}}
    halving: {halving}
",
        RATES.join(", ")
    )
}

const SYNC: &str = "{min_epochs: 1, reduction: 3}";

/// Runs cellnets (one libtorch thread, so that processes agree bit for bit) to the end.
fn run(dir: &Path, args: &[&str]) -> String {
    let output = cellnets(dir)
        .args(["--threads", "1"])
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(
        output.status.success(),
        "cellnets {args:?} failed:\n{stderr}"
    );
    stderr
}

/// A run's epoch table as (epoch, val_loss, val_accuracy).
fn curve(out: &Path, run: &str) -> Vec<(usize, f64, f64)> {
    let (header, rows) = read_table(&out.join("rates").join(run).join("epochs.csv")).unwrap();
    let column = |name: &str| header.iter().position(|c| c == name).unwrap();
    let (epoch, loss, accuracy) = (column("epoch"), column("val_loss"), column("val_accuracy"));
    rows.iter()
        .map(|row| {
            (
                row[epoch].parse().unwrap(),
                row[loss].parse().unwrap(),
                row[accuracy].parse().unwrap(),
            )
        })
        .collect()
}

/// The stage's rule, worked here from the tables alone: the val accuracy of the best
/// epoch by val loss (the first of equals) among a run's first `rung` epochs.
fn value_at(curve: &[(usize, f64, f64)], rung: usize) -> f64 {
    let mut best: Option<(f64, f64)> = None;
    for &(_, loss, accuracy) in curve.iter().filter(|(epoch, _, _)| *epoch <= rung) {
        if best.is_none_or(|(best_loss, _)| loss < best_loss) {
            best = Some((loss, accuracy));
        }
    }
    best.map_or(f64::NAN, |(_, accuracy)| accuracy)
}

/// Each run's (status, epochs) as synchronous halving at rungs 1, 3, 9 must leave it,
/// given the recorded curves.
fn expected_fates(out: &Path, names: &[String]) -> Vec<(String, String, usize)> {
    let curves: Vec<_> = names.iter().map(|name| curve(out, name)).collect();
    let mut fates: Vec<(String, String, usize)> = names
        .iter()
        .map(|name| (name.clone(), "finished".to_string(), 9))
        .collect();
    let mut alive: Vec<usize> = (0..names.len()).collect();
    for rung in [1, 3] {
        let mut ranked = alive.clone();
        ranked.sort_by(|&a, &b| {
            value_at(&curves[b], rung)
                .total_cmp(&value_at(&curves[a], rung))
                .then(a.cmp(&b))
        });
        let keep = alive.len().div_ceil(3);
        for &halted in &ranked[keep..] {
            fates[halted].1 = "halted".into();
            fates[halted].2 = rung;
        }
        alive = ranked[..keep].to_vec();
    }
    fates
}

/// Each run's (run, status, epochs_run) from summary.csv, in plan order.
fn fates(out: &Path, names: &[String]) -> Vec<(String, String, usize)> {
    let (header, rows) = read_table(&out.join("rates/summary.csv")).unwrap();
    let column = |name: &str| header.iter().position(|c| c == name).unwrap();
    names
        .iter()
        .map(|name| {
            let row = rows
                .iter()
                .find(|row| &row[column("run")] == name)
                .unwrap_or_else(|| panic!("{name} has no summary row"));
            (
                name.clone(),
                row[column("status")].clone(),
                row[column("epochs_run")].parse().unwrap(),
            )
        })
        .collect()
}

fn names() -> Vec<String> {
    RATES
        .iter()
        .map(|rate| format!("learning_rate={rate}"))
        .collect()
}

/// The winner's epoch table next to that of a straight 9-epoch run of its settings.
fn assert_winner_equals_a_straight_run(out: &Path, winner: &str) {
    let rate = winner.trim_start_matches("learning_rate=");
    let straight = study_dir(&format!(
        "  - name: rates
    model: {{kind: mlp, hidden: 16}}
    training: {{epochs: 9}}
    grid: {{learning_rate: [{rate}]}}
"
    ));
    run(straight.path(), &[]);
    let want = metrics(&straight.path().join("out"));
    let got: Vec<_> = metrics(out)
        .into_iter()
        .filter(|(run, _)| run == &format!("rates/{winner}"))
        .collect();
    assert_same_metrics(&got, &want);
}

/// Checks a finished halving study: the fates the rule gives, consistent tables, and
/// the winner against a straight run; returns the epoch tables.
fn check_halved(out: &Path) -> Vec<(String, Vec<Vec<String>>)> {
    let names = names();
    let fates = fates(out, &names);
    assert_eq!(fates, expected_fates(out, &names));
    assert_eq!(check_consistent(out), 6);
    for (name, status, epochs) in &fates {
        assert_eq!(curve(out, name).len(), *epochs, "{name}: {status}");
        // Its resume point stays, for a larger budget to continue it: one slot.
        let slots = std::fs::read_dir(out.join("rates").join(name))
            .unwrap()
            .flatten()
            .filter(|entry| {
                let file = entry.file_name().to_string_lossy().into_owned();
                file.starts_with("resume-") && !file.contains("optimizer")
            })
            .count();
        assert_eq!(slots, 1, "{name}");
        assert!(out.join("rates").join(name).join("state.yaml").is_file());
    }
    let winner = std::fs::read_to_string(out.join("rates/winner.yaml")).unwrap();
    let finished = &fates
        .iter()
        .find(|(_, status, _)| status == "finished")
        .unwrap()
        .0;
    assert!(winner.contains(&format!("run: {finished}")), "{winner}");
    metrics(out)
}

#[test]
fn halving_keeps_the_best_third_at_each_rung_and_the_winner_trains_as_a_straight_run() {
    let dir = study_dir(&study(SYNC));
    let out = dir.path().join("out");
    run(dir.path(), &[]);
    let tables = check_halved(&out);
    let names = names();
    let fates = fates(&out, &names);
    let winner = &fates
        .iter()
        .find(|(_, status, _)| status == "finished")
        .unwrap()
        .0;
    assert_winner_equals_a_straight_run(&out, winner);
    // 4 runs halted at epoch 1, one at 3, one trained to 9: 16 epochs, not 54.
    let epochs: usize = fates.iter().map(|(_, _, epochs)| epochs).sum();
    assert_eq!(epochs, 4 + 3 + 9);

    // The same study by two processes at once, and by two threads: the same tables.
    let sharded = study_dir(&study(SYNC));
    let first = spawn_worker(sharded.path(), &["--shard", "0/2"]);
    let second = spawn_worker(sharded.path(), &["--shard", "1/2"]);
    finish(first);
    finish(second);
    assert_same_metrics(&check_halved(&sharded.path().join("out")), &tables);
    let jobs = study_dir(&study(SYNC));
    run(jobs.path(), &["--jobs", "2"]);
    assert_same_metrics(&check_halved(&jobs.path().join("out")), &tables);

    // A rerun trains nothing: every run is finished or halted.
    let rerun = run(dir.path(), &[]);
    assert!(!rerun.contains("epoch 1/9"), "{rerun}");
    // --fresh trains the stage again from the start, kept resume points and all.
    let fresh = run(dir.path(), &["--fresh"]);
    assert_eq!(fresh.matches(" epoch 1/9:").count(), 6, "{fresh}");
    assert_same_metrics(&check_halved(&out), &tables);
}

#[test]
fn a_worker_killed_between_rungs_is_taken_over_and_the_study_ends_the_same() {
    let straight = study_dir(&study(SYNC));
    run(straight.path(), &[]);
    let want = metrics(&straight.path().join("out"));

    let dir = study_dir(&study(SYNC));
    let out = dir.path().join("out");
    let mut victim = spawn_worker(dir.path(), &[]);
    // Past the first rung: some run has trained its second epoch.
    let start = std::time::Instant::now();
    while !names()
        .iter()
        .any(|name| common::outputs::committed_epoch(&out.join("rates").join(name)) >= Some(2))
    {
        assert!(start.elapsed().as_secs() < 120, "no run reached epoch 2");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    victim.kill().unwrap();
    victim.wait().unwrap();
    run(dir.path(), &[]);
    assert_same_metrics(&check_halved(&out), &want);
}

/// ASHA with one worker, worked here from the recorded curves: promote the paused run
/// at the highest rung that is among the best ceil(n/3) of the n that reached it, else
/// start the next run; each run's (status, epochs) at the end.
fn expected_asha(out: &Path, names: &[String]) -> Vec<(String, String, usize)> {
    let curves: Vec<_> = names.iter().map(|name| curve(out, name)).collect();
    let rungs = [1, 3, 9];
    let mut trained = vec![0usize; names.len()];
    loop {
        let mut step = None;
        for (index, &rung) in rungs[..2].iter().enumerate().rev() {
            let reached: Vec<usize> = (0..names.len()).filter(|&i| trained[i] >= rung).collect();
            let mut ranked = reached.clone();
            ranked.sort_by(|&a, &b| {
                value_at(&curves[b], rung)
                    .total_cmp(&value_at(&curves[a], rung))
                    .then(a.cmp(&b))
            });
            let best = &ranked[..reached.len().div_ceil(3)];
            if let Some(&run) = best.iter().filter(|&&i| trained[i] == rung).min() {
                step = Some((run, rungs[index + 1]));
                break;
            }
        }
        let step = step.or_else(|| trained.iter().position(|&t| t == 0).map(|run| (run, 1)));
        let Some((run, until)) = step else { break };
        trained[run] = until;
    }
    names
        .iter()
        .zip(trained)
        .map(|(name, epochs)| {
            let status = if epochs == 9 { "finished" } else { "halted" };
            (name.clone(), status.to_string(), epochs)
        })
        .collect()
}

#[test]
fn asha_promotes_only_the_best_so_far_and_ends_every_run_finished_or_halted() {
    let dir = study_dir(&study("{min_epochs: 1, reduction: 3, mode: async}"));
    let out = dir.path().join("out");
    run(dir.path(), &[]);
    let names = names();
    let fates = fates(&out, &names);
    assert_eq!(fates, expected_asha(&out, &names));
    for (name, status, epochs) in &fates {
        assert!(
            status == "finished" || status == "halted",
            "{name}: {status}"
        );
        assert_eq!(curve(&out, name).len(), *epochs, "{name}");
    }
    assert_eq!(check_consistent(&out), 6);
}

const SAMPLED: &str = "  - name: rates
    model: {kind: mlp, hidden: 16}
    training: {epochs: 3}
    sample: {count: 6, seed: 11, space: {learning_rate: {loguniform: [0.001, 0.3]}, momentum: {uniform: [0.0, 0.9]}}}
    halving: {min_epochs: 1, reduction: 3}
";

/// The run names `cellnets list` prints for the manifest in `dir`.
fn listed(dir: &Path) -> Vec<String> {
    let output = common::outputs::cellnets_command(dir)
        .arg("list")
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            line.split_whitespace()
                .find(|word| word.contains("sample="))
        })
        .map(String::from)
        .collect()
}

#[test]
fn sampled_runs_are_reproducible_and_halted_runs_continue_when_the_budget_grows() {
    let dir = study_dir(SAMPLED);
    let out = dir.path().join("out");
    let drawn = listed(dir.path());
    assert_eq!(drawn.len(), 6, "{drawn:?}");
    assert_eq!(
        listed(dir.path()),
        drawn,
        "the same seed draws the same runs"
    );
    assert!(drawn[0].starts_with("sample=1,learning_rate="), "{drawn:?}");
    let list = common::outputs::cellnets_command(dir.path())
        .arg("list")
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.contains(
            "halving: rungs at epochs 1, 3 (sync, reduction 3); 10 epochs if no run stops \
             early, against 18 for every run to the budget"
        ),
        "{list}"
    );
    let other = study_dir(&SAMPLED.replace("seed: 11", "seed: 12"));
    assert!(listed(other.path())
        .iter()
        .all(|name| !drawn.contains(name)));

    run(dir.path(), &[]);
    let before = metrics(&out);
    // 4 runs halted at rung 1, the best 2 trained to the budget of 3.
    let epochs: usize = before.iter().map(|(_, rows)| rows.len()).sum();
    assert_eq!(epochs, 4 + 2 * 3);

    // A budget of 9 with reduction 2: rungs 1, 2, 4, 8, 9; the best 3 of rung 1 go on,
    // one of them halted before, and the runs that reached 3 go on from there.
    let manifest = dir.path().join("experiments.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let text = text
        .replace("epochs: 3}", "epochs: 9}")
        .replace("reduction: 3}", "reduction: 2}");
    std::fs::write(&manifest, text).unwrap();
    let rerun = run(dir.path(), &[]);
    assert!(rerun.contains("resuming after epoch 1"), "{rerun}");
    assert!(rerun.contains("resuming after epoch 3"), "{rerun}");
    let after = metrics(&out);
    for ((run, old), (_, new)) in before.iter().zip(&after) {
        // Every epoch trained before is kept as it was, not trained again (the budget
        // column reads 9 now).
        assert!(new.len() >= old.len(), "{run}");
        for (old, new) in old.iter().zip(new) {
            assert_eq!(old[..7], new[..7], "{run}: epoch {}", new[2]);
        }
    }
    let fates = {
        let (header, rows) = read_table(&out.join("rates/summary.csv")).unwrap();
        let status = header.iter().position(|c| c == "status").unwrap();
        rows.iter()
            .map(|row| row[status].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        fates.iter().filter(|s| *s == "finished").count(),
        1,
        "{fates:?}"
    );
    assert_eq!(
        fates.iter().filter(|s| *s == "halted").count(),
        5,
        "{fates:?}"
    );
}

/// What `cellnets status --runs` prints.
fn status_of(dir: &Path) -> String {
    let output = common::outputs::cellnets_command(dir)
        .args(["status", "--runs"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn a_shard_alone_waits_for_its_rung_then_says_which_runs_no_one_trains() {
    let dir = study_dir(&study(SYNC));
    let output = cellnets(dir.path())
        .args(["--threads", "1", "--shard", "0/2", "--claim-timeout", "2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("learning_rate=0.003, learning_rate=0.03, learning_rate=0.3 have not reached their rung")
            && stderr.contains("with the --shard that takes them"),
        "{stderr}"
    );
    let status = status_of(dir.path());
    assert!(
        status.contains("rates: 0 finished, 0 training, 3 waiting, 0 diverged, 0 failed, 3 paused at a rung, 0 halted; rungs at epochs 1, 3, 9 (sync, reduction 3) (of 6)"),
        "{status}"
    );
    assert!(
        status.contains(
            "paused    learning_rate=0.001  epoch 1/9 committed; waiting for the rung of epoch 1"
        ),
        "{status}"
    );
    assert!(
        status.contains("waiting   learning_rate=0.003  no epoch committed (next rung: epoch 1)"),
        "{status}"
    );

    // A process without a shard takes the rest; status then says who was halted where.
    run(dir.path(), &[]);
    let status = status_of(dir.path());
    assert!(
        status.contains("1 finished") && status.contains("5 halted"),
        "{status}"
    );
    assert!(status.contains("halted    learning_rate="), "{status}");
}

#[test]
fn the_report_shows_each_rungs_values_and_decisions_and_the_epochs_saved() {
    let dir = study_dir(&study(SYNC));
    let out = dir.path().join("out");
    run(dir.path(), &[]);
    let output = common::outputs::cellnets_command(dir.path())
        .args(["report", "--device", "cpu"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("Synchronous halving, reduction 3: rungs at epochs 1, 3, 9")
            && report
                .contains("**16 epochs** trained, against 54 for every run to the budget (30%)"),
        "{report}"
    );
    let header = "| run | epoch 1 | epoch 3 | epoch 9 | epochs | outcome |";
    assert!(report.contains(header), "{report}");
    let names = names();
    let fates = fates(&out, &names);
    for (name, status, epochs) in &fates {
        let row = report
            .lines()
            .find(|line| line.starts_with(&format!("| `{name}` |")))
            .unwrap_or_else(|| panic!("no rung row for {name}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        match (status.as_str(), epochs) {
            ("halted", 1) => {
                assert!(
                    cells[2].ends_with(" halted") && cells[3].is_empty(),
                    "{row}"
                )
            }
            ("halted", 3) => assert!(
                cells[2].ends_with(" on") && cells[3].ends_with(" halted"),
                "{row}"
            ),
            _ => assert!(
                cells[2].ends_with(" on") && cells[3].ends_with(" on") && cells[6] == "winner",
                "{row}"
            ),
        }
        assert_eq!(cells[5], epochs.to_string(), "{row}");
    }
    assert!(out.join("report/rates/rungs.png").is_file());
    assert!(out.join("report/rates/rungs.svg").is_file());
}

#[test]
fn clean_drops_the_resume_files_a_halving_stage_keeps_and_a_rerun_trains_nothing() {
    let dir = study_dir(&study(SYNC));
    let out = dir.path().join("out");
    run(dir.path(), &[]);
    let slots = |run: &str| {
        std::fs::read_dir(out.join("rates").join(run))
            .unwrap()
            .flatten()
            .filter(|entry| entry.file_name().to_string_lossy().starts_with("resume-"))
            .count()
    };
    // Halted runs and the finished one alike keep theirs, for a larger budget.
    let runs = names();
    assert!(runs.iter().all(|run| slots(run) > 0));
    let clean = |args: &[&str]| {
        let output = common::outputs::cellnets_command(dir.path())
            .arg("clean")
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let dry = clean(&["--dry-run"]);
    assert_eq!(dry.matches("would drop rates/").count(), 6, "{dry}");
    assert!(
        runs.iter().all(|run| slots(run) > 0),
        "a dry run removes nothing"
    );
    let done = clean(&[]);
    assert_eq!(done.matches("dropped rates/").count(), 6, "{done}");
    assert!(runs.iter().all(|run| slots(run) == 0));
    assert!(clean(&[]).contains("freed 0.0 MB of resume files in 0 run(s)"));
    // Their results stand: nothing trains again.
    let rerun = run(dir.path(), &[]);
    assert!(!rerun.contains("epoch 1/9"), "{rerun}");
}
