//! A process as the others sharing out/ see it: the holder that a claim or a lock file
//! names (host, pid, SLURM job, a token of its own), and whether it is gone.

use serde::{Deserialize, Serialize};
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Who holds a claim or a lock, as its file records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    /// The SLURM job (`<array job>_<task>`, or the job id), when under SLURM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm_job: Option<String>,
    /// Seconds since the Unix epoch when the claim was made.
    pub started: u64,
    /// Tells two claims of the same process apart, so a takeover never removes a
    /// claim other than the stale one it inspected.
    pub token: String,
}

impl Holder {
    pub fn of_this_process() -> Self {
        static CLAIMS: AtomicU64 = AtomicU64::new(0);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let host = this_host();
        let pid = std::process::id();
        let count = CLAIMS.fetch_add(1, Ordering::Relaxed);
        Holder {
            token: format!("{host}-{pid}-{}-{count}", now.as_nanos()),
            host,
            pid,
            slurm_job: slurm_job(),
            started: now.as_secs(),
        }
    }

    /// Whether it is a process of this host that is gone: what it held is free at once.
    pub fn is_gone(&self) -> bool {
        self.host == this_host()
            && self.pid != 0
            && !Path::new(&format!("/proc/{}", self.pid)).exists()
    }

    /// `host pid N (SLURM job J)`, for messages.
    pub fn describe(&self) -> String {
        let job = self
            .slurm_job
            .as_ref()
            .map(|job| format!(", SLURM job {job}"))
            .unwrap_or_default();
        format!("{} pid {}{job}", self.host, self.pid)
    }
}

/// The name other processes of this machine see in claims.
pub fn this_host() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// `<array job>_<task>` for a task of a SLURM array, the job id for a plain job.
pub fn slurm_job() -> Option<String> {
    let var = |name| std::env::var(name).ok().filter(|value| !value.is_empty());
    match (var("SLURM_ARRAY_JOB_ID"), var("SLURM_ARRAY_TASK_ID")) {
        (Some(job), Some(task)) => Some(format!("{job}_{task}")),
        _ => var("SLURM_JOB_ID"),
    }
}
