//! `cellnets slurm`: a study as SLURM jobs, a job array per stage, with dependencies,
//! submitted in order. Each stage becomes a job array with one task per run that has
//! not finished; task K runs `cellnets only STAGE --shard K/N` (N the stage's run
//! count), which takes exactly the stage's K-th run. Stages wait for the stages they
//! start from (`--dependency=afterok`), and a last job writes the report. The scripts
//! go to out/slurm/ with `submit.sh`, which submits them in order; `--submit` does the
//! same and prints the job ids. Rerun after failures: only what is unfinished is
//! submitted again.

use crate::outputs::ensemble::{ensemble_folder, read_ensemble_result};
use crate::outputs::proposals::all_drawn;
use crate::outputs::run_folder::{Failure, RunFolder};
use crate::outputs::winners;
use crate::precision::Precision;
use crate::storage::files::{write_atomically, write_executable};
use crate::study::manifest::Manifest;
use crate::study::plan::{self, RunPlan, StagePlan};
use anyhow::{bail, Context, Result};
use std::fmt::Write;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What each task asks of SLURM, and how cellnets runs in it: `cellnets slurm`'s
/// options.
#[derive(Debug, Clone, clap::Args)]
pub struct JobOptions {
    /// Partition (queue) to run in.
    #[arg(long)]
    pub partition: Option<String>,
    /// Time limit of each task, as SLURM writes it: 30, 2:00:00, 1-00:00:00.
    #[arg(long)]
    pub time: Option<String>,
    /// CPUs per task; libtorch uses this many threads.
    #[arg(long, default_value_t = 1)]
    pub cpus_per_task: u32,
    /// Memory per node, as SLURM writes it: 8G.
    #[arg(long)]
    pub mem: Option<String>,
    /// GPUs per task (use --device cuda or auto with it).
    #[arg(long)]
    pub gpus_per_task: Option<u32>,
    /// At most this many tasks of a stage at once (the array's %K).
    #[arg(long)]
    pub throttle: Option<u32>,
    /// An extra #SBATCH line, e.g. --sbatch=--account=lab (repeatable).
    #[arg(long = "sbatch", allow_hyphen_values = true)]
    pub extra: Vec<String>,
    /// Seconds before the time limit at which SLURM warns a task (SIGUSR1), which
    /// then stops at the next batch and requeues itself.
    #[arg(long, default_value_t = 120)]
    pub signal_before: u32,
    /// How often a task may requeue itself.
    #[arg(long, default_value_t = 3)]
    pub max_requeues: u32,
    /// Also submit runs that failed 3 times in a row, and let their tasks retry them.
    #[arg(long)]
    pub retry_failed: bool,
    /// Tasks also write each run's TensorBoard event files (`--tensorboard`).
    #[arg(long)]
    pub tensorboard: bool,
    /// Seconds without a heartbeat after which a run's claim is taken over.
    #[arg(long = "claim-timeout", default_value_t = crate::cluster::claim::DEFAULT_TIMEOUT.as_secs())]
    pub claim_timeout_s: u64,
}

/// The paths and command a task runs with, all absolute: tasks start elsewhere.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub binary: PathBuf,
    pub manifest: PathBuf,
    pub out_dir: PathBuf,
    pub data_dir: PathBuf,
    pub device: String,
    /// The precision switches every training task passes on.
    pub precision: Precision,
    /// `--data-memory`, in bytes, when given.
    pub data_memory: Option<u64>,
}

impl Invocation {
    /// The options every task passes on after the data folder.
    fn data_options(&self) -> String {
        self.data_memory
            .map_or(String::new(), |bytes| format!(" --data-memory {bytes}"))
    }
}

/// The log of the SLURM array task this process runs as, when it is one of the tasks
/// `cellnets slurm` wrote for `stage` (its `--output`).
pub fn task_log(out_dir: &Path, stage: &str) -> Option<PathBuf> {
    let var = |name| std::env::var(name).ok().filter(|value| !value.is_empty());
    let (job, task) = (var("SLURM_ARRAY_JOB_ID")?, var("SLURM_ARRAY_TASK_ID")?);
    let log = logs_folder(out_dir).join(format!("{stage}-{job}_{task}.log"));
    log.is_file()
        .then(|| std::path::absolute(&log).unwrap_or(log))
}

fn logs_folder(out_dir: &Path) -> PathBuf {
    out_dir
        .join(crate::storage::out_dir::SLURM_DIR)
        .join("logs")
}

/// A stage to submit: its array's task ids (positions of unfinished runs) and the
/// submitted stages it waits for.
#[derive(Debug, Clone, PartialEq)]
pub struct StageJob {
    pub stage: String,
    pub tasks: Vec<usize>,
    pub runs: usize,
    pub after: Vec<String>,
    pub script: PathBuf,
    /// A halving stage: each task is a worker that takes whichever run may train next,
    /// rung by rung, and leaves when nothing is left for it.
    pub workers: bool,
}

/// The jobs for `only` (every stage when empty) under `out_dir`: stages with unfinished
/// runs, and those starting from a stage that has them. Runs that failed too often in
/// a row are left out unless `retry_failed`; the second list says which, and why.
pub fn plan_jobs(
    manifest: &Manifest,
    only: &[String],
    out_dir: &Path,
    retry_failed: bool,
) -> Result<(Vec<StageJob>, Vec<String>)> {
    let mut given_up = Vec::new();
    let selected = plan::select(manifest, only)?;
    let plans = winners::plan_with_recorded_winners(manifest, out_dir)?;
    let plan_of = |name: &str| {
        let found = plans.iter().find(|(plan, _)| plan.name == name);
        &found.expect("every stage is planned").0
    };
    let folder = out_dir.join(crate::storage::out_dir::SLURM_DIR);
    let mut jobs: Vec<StageJob> = Vec::new();
    for (position, stage) in selected.iter().enumerate() {
        let plan = plan_of(&stage.name);
        let after: Vec<String> = stage
            .sources()
            .filter(|source| jobs.iter().any(|job| job.stage == *source))
            .map(String::from)
            .collect();
        for source in stage.sources() {
            let submitted = jobs.iter().any(|job| job.stage == source);
            if !submitted && !is_settled(plan_of(source), out_dir)? {
                bail!(
                    "stage `{}` starts from stage `{source}`, which has no winner and is not \
                     among the stages to submit: add it (`cellnets slurm MANIFEST {source} {}`)",
                    stage.name,
                    stage.name
                );
            }
        }
        // A source still training may change the winner these runs start from.
        let tasks = if plan.ensemble.is_some() {
            // One task tests it, after its members' stages; again when they retrain.
            let tested = read_ensemble_result(&ensemble_folder(out_dir, &plan.name));
            match after.is_empty() && tested.is_ok_and(|result| result.is_some()) {
                true => Vec::new(),
                false => vec![0],
            }
        } else if after.is_empty() {
            let mut tasks = unfinished(plan, out_dir, retry_failed, &mut given_up)?;
            // A TPE stage's proposals not drawn yet: a task each, which draws it.
            tasks.extend(plan.runs.len()..planned_runs(plan));
            tasks.dedup();
            tasks
        } else {
            (0..planned_runs(plan)).collect()
        };
        if tasks.is_empty() {
            continue;
        }
        jobs.push(StageJob {
            stage: stage.name.clone(),
            runs: planned_runs(plan).max(1),
            tasks,
            after,
            script: folder.join(format!("{:02}-{}.sbatch", position + 1, stage.name)),
            workers: plan.halving.is_some(),
        });
    }
    Ok((jobs, given_up))
}

/// The runs a stage will have: a TPE stage's `count`, drawn or not, else its runs.
fn planned_runs(plan: &StagePlan) -> usize {
    plan.proposals
        .as_ref()
        .map_or(plan.runs.len(), |proposals| proposals.count)
}

/// Whether the winner of a stage not submitted now is known to the tasks that start
/// from it: recorded for the stage as planned, pinned by the manifest, or settled by
/// the first of them from its runs' results, all there.
fn is_settled(plan: &StagePlan, out_dir: &Path) -> Result<bool> {
    let finished = |run: &RunPlan| RunFolder::of(out_dir, run).has_result_of(run);
    Ok(plan.pinned_winner.is_some()
        || winners::recorded_winner(out_dir, plan)?.current().is_some()
        || (all_drawn(plan) && plan.runs.iter().all(finished)))
}

/// Positions of the stage's runs without a result of their settings, less those that
/// failed too often in a row (described in `given_up`) unless `retry_failed`; when all
/// of them are finished but the winner is missing, the first, whose task writes it.
fn unfinished(
    plan: &StagePlan,
    out_dir: &Path,
    retry_failed: bool,
    given_up: &mut Vec<String>,
) -> Result<Vec<usize>> {
    let mut positions = Vec::new();
    let mut left_out = false;
    for (position, run) in plan.runs.iter().enumerate() {
        let folder = RunFolder::of(out_dir, run);
        let finished = folder.has_result_of(run);
        match folder.read_failure().filter(Failure::gives_up) {
            _ if finished => {}
            Some(failure) if !retry_failed => {
                left_out = true;
                given_up.push(format!("{} {}", run.id(), failure.describe()));
            }
            _ => positions.push(position),
        }
    }
    let settled = positions.is_empty() && !left_out;
    if settled && winners::recorded_winner(out_dir, plan)?.current().is_none() {
        positions.push(0);
    }
    Ok(positions)
}

/// `0-4` or `0,3,7`, with `%K` when throttled.
fn array_spec(tasks: &[usize], throttle: Option<u32>) -> String {
    let contiguous = tasks.windows(2).all(|pair| pair[1] == pair[0] + 1);
    let mut spec = match (tasks.first(), tasks.last()) {
        (Some(first), Some(last)) if contiguous && tasks.len() > 1 => format!("{first}-{last}"),
        _ => tasks
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(","),
    };
    if let Some(k) = throttle {
        write!(spec, "%{k}").expect("a string takes text");
    }
    spec
}

fn quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// The `#SBATCH` lines every job shares.
fn common_lines(name: &str, log: &str, options: &JobOptions, invocation: &Invocation) -> String {
    let logs = logs_folder(&invocation.out_dir);
    let mut text = format!(
        "#!/bin/bash\n#SBATCH --job-name=cellnets-{name}\n#SBATCH --output={}/{log}\n\
         #SBATCH --open-mode=append\n#SBATCH --cpus-per-task={}\n\
         #SBATCH --kill-on-invalid-dep=yes\n",
        logs.display(),
        options.cpus_per_task
    );
    let optional = [
        ("partition", options.partition.clone()),
        ("time", options.time.clone()),
        ("mem", options.mem.clone()),
        (
            "gpus-per-task",
            options.gpus_per_task.map(|n| n.to_string()),
        ),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            writeln!(text, "#SBATCH --{key}={value}").expect("a string takes text");
        }
    }
    for line in &options.extra {
        let line = line.trim().trim_start_matches("#SBATCH").trim();
        writeln!(text, "#SBATCH {line}").expect("a string takes text");
    }
    text
}

/// The sbatch script of a stage's array.
pub fn stage_script(job: &StageJob, options: &JobOptions, invocation: &Invocation) -> String {
    let mut text = common_lines(
        &job.stage,
        &format!("{}-%A_%a.log", job.stage),
        options,
        invocation,
    );
    write!(
        text,
        "#SBATCH --array={array}\n\
         #SBATCH --signal=B:USR1@{signal}\n\
         #SBATCH --requeue\n\
         # Stage `{stage}`: {share}. On SIGUSR1 (the time limit is\n\
         # near) or SIGTERM, cellnets stops at the next batch, keeps the last committed\n\
         # epoch, requeues this task (at most {requeues} times) and exits; the requeued task\n\
         # resumes. libtorch uses the task's CPUs, not the whole node's.\n\
         export OMP_NUM_THREADS=${{SLURM_CPUS_PER_TASK:-1}} MKL_NUM_THREADS=${{SLURM_CPUS_PER_TASK:-1}}\n\
         exec {binary} only {stage} --manifest {manifest} --out {out} --data-dir {data}{memory} \
         --device {device} {take} --max-requeues {requeues} \
         --claim-timeout {timeout} --threads \"${{SLURM_CPUS_PER_TASK:-1}}\"{precision}{retry}{tensorboard}\n",
        array = array_spec(&job.tasks, options.throttle),
        share = if job.workers {
            format!(
                "each task is a worker that trains whichever of its {} runs may\n# train \
                 next, rung by rung, and leaves when the rest are held by others",
                job.runs
            )
        } else {
            format!("task K trains run K of its {}", job.runs)
        },
        take = if job.workers {
            "--leave-when-idle".to_string()
        } else {
            format!("--shard \"${{SLURM_ARRAY_TASK_ID}}/{}\"", job.runs)
        },
        signal = options.signal_before,
        stage = job.stage,
        requeues = options.max_requeues,
        binary = quote(&invocation.binary),
        manifest = quote(&invocation.manifest),
        out = quote(&invocation.out_dir),
        data = quote(&invocation.data_dir),
        memory = invocation.data_options(),
        device = invocation.device,
        timeout = options.claim_timeout_s,
        precision = invocation.precision.flags(),
        retry = if options.retry_failed {
            " --retry-failed"
        } else {
            ""
        },
        tensorboard = if options.tensorboard {
            " --tensorboard"
        } else {
            ""
        },
    )
    .expect("a string takes text");
    text
}

/// The script of the last job, which writes the report.
pub fn report_script(options: &JobOptions, invocation: &Invocation) -> String {
    let cpu_only = JobOptions {
        gpus_per_task: None,
        ..options.clone()
    };
    let mut text = common_lines("report", "report-%j.log", &cpu_only, invocation);
    writeln!(
        text,
        "exec {} report {} --out {} --data-dir {}{} --device cpu",
        quote(&invocation.binary),
        quote(&invocation.manifest),
        quote(&invocation.out_dir),
        quote(&invocation.data_dir),
        invocation.data_options()
    )
    .expect("a string takes text");
    text
}

/// `submit.sh`: submits the scripts in order, each after the jobs it depends on.
fn submit_script(jobs: &[StageJob], report: &Path) -> String {
    let mut text = String::from(
        "#!/bin/bash\n# Submits the study's jobs in order; written by `cellnets slurm`.\nset -euo pipefail\n",
    );
    let var = |stage: &str| {
        format!(
            "job_{}",
            stage.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        )
    };
    for job in jobs {
        let dependency = dependency(job.after.iter().map(|stage| format!("${}", var(stage))));
        writeln!(
            text,
            "{}=$(sbatch --parsable {dependency}{} | cut -d';' -f1)\necho \"stage {}: job ${}\"",
            var(&job.stage),
            quote(&job.script),
            job.stage,
            var(&job.stage)
        )
        .expect("a string takes text");
    }
    let all = dependency(jobs.iter().map(|job| format!("${}", var(&job.stage))));
    writeln!(
        text,
        "report=$(sbatch --parsable {all}{} | cut -d';' -f1)\necho \"report: job $report\"",
        quote(report)
    )
    .expect("a string takes text");
    text
}

/// `--dependency=afterok:a:b ` or nothing.
fn dependency(ids: impl Iterator<Item = String>) -> String {
    let ids: Vec<String> = ids.collect();
    if ids.is_empty() {
        String::new()
    } else {
        format!("--dependency=afterok:{} ", ids.join(":"))
    }
}

/// Writes the scripts under out/slurm/ and returns what was written, as lines to print.
pub fn write_scripts(
    jobs: &[StageJob],
    options: &JobOptions,
    invocation: &Invocation,
) -> Result<(PathBuf, String)> {
    let folder = invocation.out_dir.join(crate::storage::out_dir::SLURM_DIR);
    fs::create_dir_all(folder.join("logs"))
        .with_context(|| format!("cannot create {}", folder.display()))?;
    let mut text = String::new();
    for job in jobs {
        write_text(&job.script, &stage_script(job, options, invocation))?;
        writeln!(
            text,
            "{}: {} of {} run(s) as array {}{}",
            job.script.display(),
            job.tasks.len(),
            job.runs,
            array_spec(&job.tasks, options.throttle),
            if job.after.is_empty() {
                String::new()
            } else {
                format!(", after {}", job.after.join(", "))
            }
        )?;
    }
    let report = folder.join("report.sbatch");
    write_text(&report, &report_script(options, invocation))?;
    writeln!(
        text,
        "{}: cellnets report, after every stage",
        report.display()
    )?;
    let submit = folder.join("submit.sh");
    write_executable(&submit, &submit_script(jobs, &report))?;
    writeln!(text, "{}: submits them in order", submit.display())?;
    Ok((report, text))
}

/// Writes a script whole: two `cellnets slurm` at once never mix their lines.
fn write_text(path: &Path, text: &str) -> Result<()> {
    write_atomically(path, |tmp| Ok(fs::write(tmp, text)?))
}

/// Submits the jobs in order with their dependencies, then the report; returns a line
/// per job with its id.
pub fn submit(jobs: &[StageJob], report: &Path) -> Result<String> {
    let mut ids: Vec<(String, String)> = Vec::new();
    let mut text = String::new();
    for job in jobs {
        let after = job.after.iter().map(|stage| {
            ids.iter()
                .find(|(submitted, _)| submitted == stage)
                .map(|(_, id)| id.clone())
                .expect("sources are submitted first")
        });
        let id = sbatch(&job.script, dependency(after))?;
        writeln!(
            text,
            "stage {}: job {id} ({} task(s))",
            job.stage,
            job.tasks.len()
        )?;
        ids.push((job.stage.clone(), id));
    }
    let id = sbatch(report, dependency(ids.iter().map(|(_, id)| id.clone())))?;
    writeln!(text, "report: job {id}")?;
    Ok(text)
}

fn sbatch(script: &Path, dependency: String) -> Result<String> {
    let mut command = Command::new("sbatch");
    command.arg("--parsable");
    if let Some(option) = dependency.split_whitespace().next() {
        command.arg(option);
    }
    let output = command.arg(script).output().context(
        "cannot run sbatch: is this a SLURM login node? Without --submit, the scripts \
         and out/slurm/submit.sh can be copied to one",
    )?;
    if !output.status.success() {
        bail!(
            "sbatch {} failed: {}",
            script.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let id = stdout
        .trim()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    if id.is_empty() {
        bail!("sbatch {} printed no job id", script.display());
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tpe_stage_has_a_task_per_proposal_drawn_or_not() {
        let manifest = crate::study::manifest::parse(
            "dataset: {name: bloodmnist}
defaults: {epochs: 1}
stages:
  - name: tpe
    model: {kind: mlp, hidden: 8}
    sample: {method: tpe, count: 12, n_startup_trials: 3, space: {hidden: {int: [2, 64]}}}
",
        )
        .unwrap();
        let out = tempfile::tempdir().unwrap();
        let (jobs, _) = plan_jobs(&manifest, &[], out.path(), false).unwrap();
        assert_eq!(jobs[0].runs, 12);
        assert_eq!(jobs[0].tasks, (0..12).collect::<Vec<_>>());
    }

    #[test]
    fn arrays_list_unfinished_runs_compactly_with_their_throttle() {
        assert_eq!(array_spec(&[0, 1, 2, 3], None), "0-3");
        assert_eq!(array_spec(&[1, 4, 5], Some(2)), "1,4,5%2");
        assert_eq!(array_spec(&[3], None), "3");
    }

    #[test]
    fn tasks_pass_the_data_memory_budget_and_precision_switches_on() {
        let options = JobOptions {
            partition: None,
            time: None,
            cpus_per_task: 2,
            mem: None,
            gpus_per_task: None,
            throttle: None,
            extra: Vec::new(),
            signal_before: 120,
            max_requeues: 3,
            retry_failed: false,
            tensorboard: false,
            claim_timeout_s: 600,
        };
        let mut invocation = Invocation {
            binary: "/bin/cellnets".into(),
            manifest: "/m.yaml".into(),
            out_dir: "/out".into(),
            data_dir: "/data".into(),
            device: "cpu".into(),
            precision: Precision::default(),
            data_memory: Some(1 << 30),
        };
        let job = StageJob {
            stage: "s".into(),
            tasks: vec![0],
            runs: 1,
            after: Vec::new(),
            script: "/out/slurm/s.sh".into(),
            workers: false,
        };
        let budget = "--data-dir '/data' --data-memory 1073741824 ";
        assert!(stage_script(&job, &options, &invocation).contains(budget));
        assert!(report_script(&options, &invocation).contains(budget));
        invocation.data_memory = None;
        assert!(!stage_script(&job, &options, &invocation).contains("--data-memory"));
        assert!(!stage_script(&job, &options, &invocation).contains("--bf16"));
        invocation.precision.bf16 = true;
        assert!(stage_script(&job, &options, &invocation).contains("\" --bf16\n"));
        assert!(!report_script(&options, &invocation).contains("--bf16"));
        let workers = StageJob {
            workers: true,
            ..job.clone()
        };
        let script = stage_script(&workers, &options, &invocation);
        assert!(script.contains(" --leave-when-idle ") && !script.contains("--shard"));
    }
}
