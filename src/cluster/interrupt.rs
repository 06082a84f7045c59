//! SIGTERM and SIGUSR1 (SLURM's warning before a time limit or preemption): stop at a
//! batch, requeue the SLURM task, exit 75. The training loop stops at the next batch,
//! the epoch in flight is dropped (the last committed one stays the resume point),
//! claims are released, and under SLURM the process requeues its own array task and
//! exits with `EXIT_CODE`. A second signal ends the process at once.

use crate::train::stop::flag;
use signal_hook::SigId;
use std::process::Command;
use std::sync::Mutex;

/// The exit status of a process stopped by a signal before its runs finished: rerun it
/// (or let SLURM requeue it) to resume. 75 is sysexits' EX_TEMPFAIL.
pub const EXIT_CODE: u8 = 75;

/// The handlers that end the process on a second signal.
static SHUTDOWNS: Mutex<Vec<SigId>> = Mutex::new(Vec::new());

/// Makes SIGTERM and SIGUSR1 ask for a stop; a second one exits at once.
pub fn install() -> std::io::Result<()> {
    use signal_hook::consts::{SIGTERM, SIGUSR1};
    let mut shutdowns = SHUTDOWNS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for signal in [SIGTERM, SIGUSR1] {
        shutdowns.push(signal_hook::flag::register_conditional_shutdown(
            signal,
            1,
            flag().clone(),
        )?);
        signal_hook::flag::register(signal, flag().clone())?;
    }
    Ok(())
}

/// From now on signals are ignored: the process is stopping in order, and requeuing
/// itself makes SLURM send it a SIGTERM that must not cut that short.
pub fn ignore_further_signals() {
    let shutdowns = SHUTDOWNS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for id in shutdowns.iter() {
        signal_hook::low_level::unregister(*id);
    }
}

/// What became of a stopped SLURM task.
#[derive(Debug, PartialEq)]
pub enum Requeue {
    /// Not a SLURM job: the user reruns the command.
    NotSlurm,
    /// `scontrol requeue <job>` succeeded.
    Requeued {
        job: String,
        restart: u32,
    },
    /// SLURM is ending or requeuing the job itself (scancel, scontrol requeue,
    /// preemption): requeuing it again would undo a cancel.
    LeftToSlurm {
        job: String,
        state: String,
    },
    /// The task was requeued `max` times already.
    Exhausted {
        job: String,
        max: u32,
    },
    Failed {
        job: String,
        error: String,
    },
}

impl std::fmt::Display for Requeue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Requeue::NotSlurm => write!(f, "rerun the same command to resume"),
            Requeue::Requeued { job, restart } => {
                write!(f, "requeued SLURM job {job} (requeue {})", restart + 1)
            }
            Requeue::LeftToSlurm { job, state } => {
                write!(f, "SLURM job {job} is {state}: not requeued by cellnets")
            }
            Requeue::Exhausted { job, max } => write!(
                f,
                "SLURM job {job} was requeued {max} times (--max-requeues): not again; \
                 rerun `cellnets slurm --submit` to submit what is unfinished"
            ),
            Requeue::Failed { job, error } => write!(
                f,
                "could not requeue SLURM job {job} ({error}): rerun `cellnets slurm --submit`"
            ),
        }
    }
}

/// Requeues this process's SLURM job or array task, at most `max` times over its life
/// (SLURM counts them in SLURM_RESTART_COUNT). The array task, not the whole array:
/// the other tasks are fine.
pub fn requeue_self(max: u32) -> Requeue {
    let Some(job) = crate::cluster::process::slurm_job() else {
        return Requeue::NotSlurm;
    };
    let restart: u32 = std::env::var("SLURM_RESTART_COUNT")
        .ok()
        .and_then(|count| count.parse().ok())
        .unwrap_or(0);
    if restart >= max {
        return Requeue::Exhausted { job, max };
    }
    let state = job_state(&job).unwrap_or_else(|| "RUNNING".into());
    if !matches!(state.as_str(), "RUNNING" | "PREEMPTED" | "SUSPENDED") {
        return Requeue::LeftToSlurm { job, state };
    }
    match Command::new("scontrol").args(["requeue", &job]).output() {
        Ok(output) if output.status.success() => Requeue::Requeued { job, restart },
        Ok(output) => Requeue::Failed {
            job,
            error: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        },
        Err(error) => Requeue::Failed {
            job,
            error: format!("cannot run scontrol: {error}"),
        },
    }
}

/// The job's state as squeue shows it (`RUNNING`, `CANCELLED`, ...).
fn job_state(job: &str) -> Option<String> {
    let output = Command::new("squeue")
        .args(["-h", "-o", "%T", "-j", job])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    Some(text.lines().next()?.trim().to_string()).filter(|state| !state.is_empty())
}
