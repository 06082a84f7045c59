//! A study through a real one-node SLURM cluster (scripts/slurm-cluster.sh installs and
//! starts it): `cellnets slurm --submit` runs each stage as an array, two tasks at
//! once; one task is requeued by `scontrol requeue`, one gets SLURM's SIGUSR1 warning
//! and requeues itself, one is SIGKILLed and its stale claim taken over when the
//! unfinished runs are resubmitted. Every run trains once, resumes where it stopped,
//! and the epochs match a single process's bit for bit (one libtorch thread each).
//! A halving stage's tasks are workers that take runs rung by rung and end as one
//! process ends the stage. `CELLNETS_SLURM_TEST=skip` skips these where SLURM cannot be
//! installed.

use crate::common;

use common::outputs::{
    assert_same_metrics, cellnets, cellnets_command, check_consistent, claims, committed_epoch,
    metrics, study_dir, summary_rows,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

const STUDY: &str = "  - name: width
    model: {kind: mlp, hidden: 32}
    training: {epochs: 300}
    grid: {hidden: [32, 64, 96, 128]}
  - name: dropout
    from: width
    grid: {dropout: [0.0, 0.5]}
";

/// The one-node cluster, stopped (its daemons, by pid) when dropped.
struct Cluster {
    dir: tempfile::TempDir,
    conf: PathBuf,
}

/// The cluster's daemons listen on fixed ports: one test's cluster at a time. None
/// when `CELLNETS_SLURM_TEST=skip`.
fn one_cluster() -> Option<std::sync::MutexGuard<'static, ()>> {
    static ONE_CLUSTER: std::sync::Mutex<()> = std::sync::Mutex::new(());
    if std::env::var("CELLNETS_SLURM_TEST").is_ok_and(|value| value == "skip") {
        eprintln!("CELLNETS_SLURM_TEST=skip: the SLURM test is skipped");
        return None;
    }
    Some(
        ONE_CLUSTER
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
    )
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let output = Command::new(script())
            .args(["start", &dir.path().display().to_string()])
            .output()
            .unwrap();
        let cluster = Cluster {
            conf: dir.path().join("slurm.conf"),
            dir,
        };
        assert!(
            output.status.success(),
            "scripts/slurm-cluster.sh start failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        cluster
    }

    /// A SLURM client command of this cluster.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.env("SLURM_CONF", &self.conf);
        command
    }

    fn run(&self, program: &str, args: &[&str]) -> String {
        let output = self.command(program).args(args).output().unwrap();
        String::from_utf8_lossy(&output.stdout).to_string()
    }

    /// The controller's and the node daemon's log ends, for failure messages.
    fn logs(&self) -> String {
        let mut text = String::new();
        for name in ["slurmctld.log", "slurmd.log"] {
            let log = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            text += &format!("--- {name} (last 40 lines)\n");
            for line in tail.into_iter().rev() {
                text += line;
                text += "\n";
            }
        }
        text + "--- squeue\n" + &self.run("squeue", &["-o", "%i %T %r"])
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .args(["stop", &self.dir.path().display().to_string()])
            .status();
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm-cluster.sh")
}

/// Every task log of the study, with the cluster's logs, for failure messages.
fn all_logs(out: &Path, cluster: &Cluster) -> String {
    let mut text = String::new();
    let mut logs: Vec<PathBuf> = std::fs::read_dir(out.join("slurm/logs"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .collect();
    logs.sort();
    for log in logs {
        text += &format!("--- {}\n", log.display());
        text += &std::fs::read_to_string(&log).unwrap_or_default();
    }
    text + &cluster.logs()
}

/// Polls `done` every 200 ms for at most `limit`, failing with every log.
fn wait_until(
    what: &str,
    limit: Duration,
    out: &Path,
    cluster: &Cluster,
    mut done: impl FnMut() -> bool,
) {
    let start = Instant::now();
    while !done() {
        if start.elapsed() > limit {
            panic!(
                "{what}: not within {} s\n{}",
                limit.as_secs(),
                all_logs(out, cluster)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn submit(dir: &Path, cluster: &Cluster) -> Output {
    let output = cellnets_command(dir)
        .env("SLURM_CONF", &cluster.conf)
        .args([
            "slurm",
            "experiments.yaml",
            "--device",
            "cpu",
            "--submit",
            "--throttle",
            "2",
            "--cpus-per-task",
            "1",
            "--claim-timeout",
            "60",
            "--sbatch=--comment=cellnets-test",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "cellnets slurm --submit failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn job_of(stdout: &str, stage: &str) -> String {
    let prefix = format!("stage {stage}: job ");
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no job for {stage} in:\n{stdout}"))
        .to_string()
}

fn finished_times(out: &Path) -> HashMap<PathBuf, SystemTime> {
    common::outputs::run_dirs(out)
        .into_iter()
        .map(|dir| dir.join("result.yaml"))
        .filter(|result| result.exists())
        .map(|result| {
            let modified = std::fs::metadata(&result).unwrap().modified().unwrap();
            (result, modified)
        })
        .collect()
}

/// Sends `signal` to the process that holds `run`'s claim, checking it is `task`.
fn signal_holder(run: &Path, task: &str, signal: &str) {
    let claim = std::fs::read_to_string(run.with_extension("claim")).unwrap();
    let holder: cellnets::cluster::claim::Holder = serde_yaml::from_str(&claim).unwrap();
    assert_eq!(holder.slurm_job.as_deref(), Some(task));
    let sent = Command::new("kill")
        .args([signal, &holder.pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill {signal} {}", holder.pid);
}

#[test]
fn a_study_through_slurm_survives_requeues_signals_and_a_kill() {
    let Some(_alone) = one_cluster() else {
        return;
    };
    let started = Instant::now();
    let cluster = Cluster::start();
    let dir = study_dir(STUDY);
    let out = dir.path().join("out");

    // The single-process reference, with one libtorch thread as each task has.
    let straight_dir = study_dir(STUDY);
    let straight = std::thread::spawn({
        let path = straight_dir.path().to_path_buf();
        move || {
            cellnets(&path)
                .env("OMP_NUM_THREADS", "1")
                .output()
                .unwrap()
        }
    });

    let first = submit(dir.path(), &cluster);
    let stdout = String::from_utf8_lossy(&first.stdout).to_string();
    let width = job_of(&stdout, "width");
    let width_dir = |run: &str| out.join("width").join(run);

    // At least two tasks train at once.
    let mut most_running = 0;
    let mut running = || {
        let states = cluster.run("squeue", &["-h", "-j", &width, "-o", "%T"]);
        let now = states.lines().filter(|state| *state == "RUNNING").count();
        most_running = most_running.max(now);
        most_running >= 2
    };
    wait_until(
        "two width tasks running",
        Duration::from_secs(120),
        &out,
        &cluster,
        &mut running,
    );

    // Task 0: SLURM requeues it (SIGTERM, then a fresh start that resumes).
    let task = |k: usize| format!("{width}_{k}");
    let at_epoch = |run: &'static str| {
        let dir = width_dir(run);
        move || committed_epoch(&dir).is_some_and(|epoch| epoch >= 2)
    };
    wait_until(
        "width/hidden=32 at epoch 2",
        Duration::from_secs(120),
        &out,
        &cluster,
        at_epoch("hidden=32"),
    );
    let requeue = cluster
        .command("scontrol")
        .args(["requeue", &task(0)])
        .output()
        .unwrap();
    assert!(
        requeue.status.success(),
        "scontrol requeue: {}\n{}",
        String::from_utf8_lossy(&requeue.stderr),
        all_logs(&out, &cluster)
    );

    // Task 1: SLURM's warning signal; cellnets requeues the task itself.
    wait_until(
        "width/hidden=64 at epoch 2",
        Duration::from_secs(120),
        &out,
        &cluster,
        at_epoch("hidden=64"),
    );
    // What `--signal=B:USR1` does: the batch step is cellnets itself (the script
    // execs it), so the signal goes to the claim holder's pid. Not `scancel
    // --signal`: it retries while task 0 is completing, and a late retry can hit the
    // requeued task before it has set up its handler, which no time limit would do.
    signal_holder(&width_dir("hidden=64"), &task(1), "-USR1");

    // Task 2: SIGKILLed, as by the OOM killer; its claim stays behind.
    wait_until(
        "width/hidden=96 at epoch 2",
        Duration::from_secs(180),
        &out,
        &cluster,
        at_epoch("hidden=96"),
    );
    signal_holder(&width_dir("hidden=96"), &task(2), "-KILL");

    // The rest of the first submission ends: the dropout stage and the report never
    // start, since width failed (--kill-on-invalid-dep cancels them).
    wait_until(
        "the first submission to end",
        Duration::from_secs(240),
        &out,
        &cluster,
        || cluster.run("squeue", &["-h", "-o", "%i"]).trim().is_empty(),
    );
    assert!(!out.join("width/hidden=96/result.yaml").exists());
    assert!(width_dir("hidden=96").with_extension("claim").exists());
    let finished_before = finished_times(&out);
    assert_eq!(finished_before.len(), 3, "{}", all_logs(&out, &cluster));

    // Resubmitted: only width's unfinished run, then dropout and the report.
    let second = submit(dir.path(), &cluster);
    let stdout = String::from_utf8_lossy(&second.stdout).to_string();
    assert!(stdout.contains("1 of 4 run(s) as array 2%2"), "{stdout}");
    wait_until(
        "the second submission to end",
        Duration::from_secs(240),
        &out,
        &cluster,
        || cluster.run("squeue", &["-h", "-o", "%i"]).trim().is_empty(),
    );
    let logs = all_logs(&out, &cluster);
    assert!(out.join("report.md").is_file(), "no report:\n{logs}");
    assert!(
        logs.contains("width/hidden=96: took over the stale claim"),
        "{logs}"
    );
    for run in ["hidden=32", "hidden=64", "hidden=96"] {
        assert!(
            logs.contains(&format!("width/{run}: resuming after epoch")),
            "{run}:\n{logs}"
        );
    }
    assert!(logs.contains("requeued SLURM job"), "{logs}");

    assert_eq!(check_consistent(&out), 6, "{logs}");
    for (result, modified) in finished_before {
        let now = std::fs::metadata(&result).unwrap().modified().unwrap();
        assert_eq!(now, modified, "{} was redone", result.display());
    }
    assert_eq!(
        (summary_rows(&out, "width"), summary_rows(&out, "dropout")),
        (4, 2)
    );
    assert!(out.join("width/winner.yaml").is_file() && out.join("dropout/winner.yaml").is_file());
    assert!(claims(&out).is_empty(), "claims left: {:?}", claims(&out));

    eprintln!(
        "the study took {:.0} s through SLURM",
        started.elapsed().as_secs_f64()
    );
    let straight = straight.join().unwrap();
    assert!(
        straight.status.success(),
        "{}",
        String::from_utf8_lossy(&straight.stderr)
    );
    assert_same_metrics(&metrics(&out), &metrics(&straight_dir.path().join("out")));
}

const HALVING: &str = "  - name: rates
    model: {kind: mlp, hidden: 16}
    training: {epochs: 9}
    grid: {learning_rate: [0.001, 0.003, 0.01, 0.03, 0.1, 0.3]}
    halving: {min_epochs: 1, reduction: 3}
";

#[test]
fn a_halving_stage_through_slurm_ends_as_one_process_ends_it() {
    let Some(_alone) = one_cluster() else {
        return;
    };
    let cluster = Cluster::start();
    let dir = study_dir(HALVING);
    let out = dir.path().join("out");
    let straight = study_dir(HALVING);
    let output = cellnets(straight.path())
        .args(["--threads", "1"])
        .output()
        .unwrap();
    assert!(output.status.success());

    let submitted = submit(dir.path(), &cluster);
    let stdout = String::from_utf8_lossy(&submitted.stdout).to_string();
    job_of(&stdout, "rates");
    let script = std::fs::read_to_string(out.join("slurm/01-rates.sbatch")).unwrap();
    assert!(
        script.contains(" --leave-when-idle ") && !script.contains("--shard"),
        "{script}"
    );
    wait_until(
        "the halving stage to end",
        Duration::from_secs(300),
        &out,
        &cluster,
        || cluster.run("squeue", &["-h", "-o", "%i"]).trim().is_empty(),
    );
    let logs = all_logs(&out, &cluster);
    assert_eq!(check_consistent(&out), 6, "{logs}");
    assert!(out.join("rates/winner.yaml").is_file(), "{logs}");
    assert!(claims(&out).is_empty(), "claims left: {:?}", claims(&out));
    assert_same_metrics(&metrics(&out), &metrics(&straight.path().join("out")));
}
