//! Many processes started at the same instant on one out/, as a SLURM array starts its
//! tasks: `--shard`ed studies on a fresh out/, racing breakers of a dead holder's lock,
//! and racing takers of a stale claim. Each race is repeated for a bounded number of
//! rounds; a round that breaks an invariant fails with what it saw.
//!
//! The lock and claim races run this test binary itself as the racing processes: with
//! `CELLNETS_RACE_ROLE` set, `race_worker` plays one of them instead of being a test.

use crate::common;

use cellnets::cluster::claim::{try_claim, Attempt};
use cellnets::cluster::file_lock::with_lock;
use cellnets::cluster::process::Holder;
use cellnets::storage::files::set_modified;
use common::outputs::{check_consistent, study_dir};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

const PROCESSES: usize = 16;

/// Where the racers wait: each writes `ready-<i>`, then waits for `go`.
fn wait_for_go(dir: &Path, worker: usize) {
    fs::write(dir.join(format!("ready-{worker}")), "").unwrap();
    let start = Instant::now();
    while !dir.join("go").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no go within a minute"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Lets `children` go at the same instant, once each has started and is waiting.
fn start_together(dir: &Path, children: usize) {
    let start = Instant::now();
    while (0..children).any(|i| !dir.join(format!("ready-{i}")).exists()) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the racers did not all start within two minutes"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    fs::write(dir.join("go"), "").unwrap();
}

/// Waits for `children` (at most `RACE_DEADLINE`: a racer that hangs is killed and the
/// test fails, rather than CI waiting on it) and returns their stderr, in order.
fn finish_all(children: Vec<Child>, what: &str) -> Vec<String> {
    let pids: Vec<u32> = children.iter().map(Child::id).collect();
    let (sender, receiver) = mpsc::channel();
    for (i, child) in children.into_iter().enumerate() {
        let sender = sender.clone();
        std::thread::spawn(move || sender.send((i, child.wait_with_output())));
    }
    drop(sender);
    let deadline = Instant::now() + RACE_DEADLINE;
    let mut logs = vec![String::new(); pids.len()];
    for _ in 0..pids.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok((i, output)) = receiver.recv_timeout(left) else {
            for pid in &pids {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
            panic!(
                "{what}: not all finished within {} s",
                RACE_DEADLINE.as_secs()
            );
        };
        let output = output.unwrap();
        logs[i] = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{what} {i} failed:\n{}", logs[i]);
    }
    logs
}

/// Longer than any round takes here (a few seconds to half a minute on 2 cores).
const RACE_DEADLINE: Duration = Duration::from_secs(300);

/// A holder as another machine's process that stopped long ago would have left it.
fn dead_holder() -> Holder {
    let mut holder = Holder::of_this_process();
    holder.host = "a-machine-that-died".into();
    holder.token = format!("dead-{}", holder.token);
    holder
}

fn plant(path: &Path, holder: &Holder) {
    fs::write(path, serde_yaml::to_string(holder).unwrap()).unwrap();
    set_modified(path, SystemTime::now() - Duration::from_secs(3600)).unwrap();
}

/// Starts `PROCESSES` copies of this test binary as racers of `role` in `dir`.
fn spawn_racers(role: &str, dir: &Path) -> Vec<Child> {
    (0..PROCESSES)
        .map(|worker| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "races::race_worker",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("CELLNETS_RACE_ROLE", role)
                .env("CELLNETS_RACE_DIR", dir)
                .env("CELLNETS_RACE_WORKER", worker.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect()
}

#[test]
fn race_worker() {
    let Ok(role) = std::env::var("CELLNETS_RACE_ROLE") else {
        return;
    };
    let dir = PathBuf::from(std::env::var("CELLNETS_RACE_DIR").unwrap());
    let worker: usize = std::env::var("CELLNETS_RACE_WORKER")
        .unwrap()
        .parse()
        .unwrap();
    wait_for_go(&dir, worker);
    match role.as_str() {
        "lock" => lock_racer(&dir),
        "claim" => claim_racer(&dir, worker),
        other => panic!("no racer {other}"),
    }
}

/// Takes the lock a few times; inside it, a file only one holder may create, and a
/// counter incremented by read, pause, write, which loses counts when two overlap.
fn lock_racer(dir: &Path) {
    for _ in 0..LOCKS_PER_RACER {
        with_lock(&dir.join(".lock"), || {
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(dir.join("inside"))
                .expect("two processes hold the lock at once");
            let counter = dir.join("counter");
            let count: usize = fs::read_to_string(&counter).map_or(0, |text| text.parse().unwrap());
            std::thread::sleep(Duration::from_micros(300));
            fs::write(&counter, (count + 1).to_string()).unwrap();
            fs::remove_file(dir.join("inside")).unwrap();
            Ok(())
        })
        .unwrap();
    }
}

const LOCKS_PER_RACER: usize = 5;

/// Tries once to claim the run whose stale claim every racer sees; a winner holds it
/// for a while, inside a file only one holder may create. The racer that removes the
/// stale claim need not be the one that then claims the run.
fn claim_racer(dir: &Path, worker: usize) {
    let mut taken_over = None;
    let attempt = try_claim(
        &dir.join("run.claim"),
        Duration::from_secs(60),
        &mut taken_over,
    );
    if taken_over.is_some() {
        fs::write(dir.join(format!("removed-stale-{worker}")), "").unwrap();
    }
    if let Attempt::Claimed(claim) = attempt.unwrap() {
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dir.join("inside"))
            .expect("two processes hold the claim at once");
        fs::write(dir.join(format!("won-{worker}")), "").unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        fs::remove_file(dir.join("inside")).unwrap();
        drop(claim);
    }
}

fn files_starting(dir: &Path, prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(prefix))
        .collect();
    names.sort();
    names
}

#[test]
fn racing_processes_break_a_dead_holders_lock_once_and_never_hold_it_together() {
    for round in 0..6 {
        let dir = tempfile::tempdir().unwrap();
        let mut holder = dead_holder();
        if round % 2 == 1 {
            // A process of this host that is gone: broken at once, not after 30 s.
            holder.host = cellnets::cluster::process::this_host();
            holder.pid = u32::MAX - 1;
        }
        plant(&dir.path().join(".lock"), &holder);
        let racers = spawn_racers("lock", dir.path());
        start_together(dir.path(), PROCESSES);
        finish_all(racers, &format!("round {round}: lock racer"));
        let count = fs::read_to_string(dir.path().join("counter")).unwrap();
        assert_eq!(
            count,
            (PROCESSES * LOCKS_PER_RACER).to_string(),
            "round {round}"
        );
        let left = files_starting(dir.path(), ".lock");
        assert!(left.is_empty(), "round {round}: left {left:?}");
    }
}

#[test]
fn racing_processes_take_over_a_stale_claim_once() {
    for round in 0..6 {
        let dir = tempfile::tempdir().unwrap();
        plant(&dir.path().join("run.claim"), &dead_holder());
        let racers = spawn_racers("claim", dir.path());
        start_together(dir.path(), PROCESSES);
        finish_all(racers, &format!("round {round}: claim racer"));
        let won = files_starting(dir.path(), "won-");
        assert_eq!(won.len(), 1, "round {round}: {won:?}");
        let removed = files_starting(dir.path(), "removed-stale-");
        assert_eq!(
            removed.len(),
            1,
            "round {round}: the stale claim is removed once"
        );
        assert!(!dir.path().join("run.claim").exists(), "released");
    }
}

const SHARDED_STUDY: &str = "  - name: width
    model: {kind: mlp, hidden: 4}
    training: {epochs: 1, batch_size: 256}
    grid: {hidden: [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]}
  - name: rate
    from: width
    training: {epochs: 1, batch_size: 256}
    grid: {learning_rate: [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.1, 0.11, 0.12, 0.13, 0.14, 0.15, 0.16]}
";

/// Rounds of the sharded race: `CELLNETS_RACE_ROUNDS` (default 30).
fn sharded_rounds() -> usize {
    std::env::var("CELLNETS_RACE_ROUNDS")
        .ok()
        .and_then(|rounds| rounds.parse().ok())
        .unwrap_or(30)
}

/// Starts `cellnets` with `args` in `dir` once `gate/go` exists, as racer `k`.
fn spawn_gated(dir: &Path, gate: &Path, k: usize, args: &[String]) -> Child {
    // Each waits in a shell for the gate, so that all start cellnets at once.
    let wait = format!(
        "touch {gate}/ready-{k}; while [ ! -e {gate}/go ]; do sleep 0.001; done; exec \"$0\" \"$@\"",
        gate = gate.display()
    );
    Command::new("sh")
        .args(["-c", &wait])
        .arg(env!("CARGO_BIN_EXE_cellnets"))
        .args(["--device", "cpu", "--threads", "1"])
        .args(args)
        .current_dir(dir)
        .env("CELLNETS_DOWNLOAD_URL", "http://127.0.0.1:9")
        .env_remove("CELLNETS_DATA_DIR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The runs that the logs say were trained (their first epoch's line; a reused run has
/// none), by name, sorted.
fn trained_in(logs: &[String]) -> Vec<String> {
    let mut runs: Vec<String> = logs
        .iter()
        .flat_map(|log| log.lines())
        .filter_map(|line| line.trim().split_once(" epoch 1/"))
        .map(|(run, _)| run.to_string())
        .collect();
    runs.sort();
    runs
}

/// The runs trained more than once.
fn twice(trained: &[String]) -> Vec<&String> {
    let mut repeated: Vec<&String> = trained
        .windows(2)
        .filter(|pair| pair[0] == pair[1])
        .map(|pair| &pair[0])
        .collect();
    repeated.dedup();
    repeated
}

#[test]
fn sixteen_shards_started_at_once_on_a_fresh_out_train_every_run_once() {
    let study = study_dir(SHARDED_STUDY);
    let start = Instant::now();
    for round in 0..sharded_rounds() {
        let out = study.path().join(format!("out-{round}"));
        let gate = tempfile::tempdir().unwrap();
        let processes: Vec<Child> = (0..PROCESSES)
            .map(|k| {
                let shard = ["--shard".into(), format!("{k}/{PROCESSES}"), "--out".into()];
                let args = [&shard[..], &[out.display().to_string()]].concat();
                spawn_gated(study.path(), gate.path(), k, &args)
            })
            .collect();
        start_together(gate.path(), PROCESSES);
        let logs = finish_all(processes, &format!("round {round}: shard"));
        assert_eq!(check_consistent(&out), 32, "round {round}");
        for stage in ["width", "rate"] {
            let (_, rows) =
                cellnets::storage::files::read_table(&out.join(stage).join("summary.csv")).unwrap();
            assert_eq!(rows.len(), 16, "round {round}: {stage}'s summary");
            assert!(out.join(stage).join("winner.yaml").is_file());
        }
        let trained = trained_in(&logs);
        assert!(
            twice(&trained).is_empty(),
            "round {round}: {:?}",
            twice(&trained)
        );
        let strays: Vec<_> = fs::read_dir(&out)
            .unwrap()
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with('.'))
            .collect();
        assert!(strays.is_empty(), "round {round}: left in out/: {strays:?}");
        fs::remove_dir_all(&out).unwrap();
    }
    eprintln!(
        "{} rounds of {PROCESSES} processes in {:.0} s",
        sharded_rounds(),
        start.elapsed().as_secs_f64()
    );
}

/// Runs long enough (tens of milliseconds) that processes started together are all
/// running before the first of them has finished its share.
const FRESH_STUDY: &str = "  - name: width
    model: {kind: mlp, hidden: 4}
    training: {epochs: 8}
    grid: {hidden: [2, 3, 4, 5, 6, 7, 8, 9]}
  - name: rate
    from: width
    training: {epochs: 8}
    grid: {learning_rate: [0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09]}
";

#[test]
fn processes_started_together_with_fresh_retrain_each_run_once() {
    let study = study_dir(FRESH_STUDY);
    let first = Command::new(env!("CARGO_BIN_EXE_cellnets"))
        .args(["--device", "cpu", "--threads", "1"])
        .current_dir(study.path())
        .output()
        .unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    for round in 0..3 {
        let before = SystemTime::now();
        let gate = tempfile::tempdir().unwrap();
        let processes: Vec<Child> = (0..4)
            .map(|k| spawn_gated(study.path(), gate.path(), k, &["--fresh".to_string()]))
            .collect();
        start_together(gate.path(), 4);
        let logs = finish_all(processes, &format!("round {round}: a --fresh process"));
        // Each run is retrained by one process; the others take its new result.
        let trained = trained_in(&logs);
        assert!(
            twice(&trained).is_empty(),
            "round {round}: {:?}",
            twice(&trained)
        );
        assert_eq!(trained.len(), 16, "round {round}: {trained:?}");
        let out = study.path().join("out");
        assert_eq!(check_consistent(&out), 16);
        for stage in ["width", "rate"] {
            for run in fs::read_dir(out.join(stage)).unwrap().flatten() {
                let result = run.path().join("result.yaml");
                if result.exists() {
                    let committed = fs::metadata(&result).unwrap().modified().unwrap();
                    assert!(
                        committed >= before,
                        "round {round}: {} is old",
                        result.display()
                    );
                }
            }
        }
        let registered = fs::read_dir(out.join(".fresh")).unwrap().count();
        assert_eq!(
            registered, 0,
            "round {round}: every registration is removed"
        );
    }
}
