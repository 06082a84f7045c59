//! `--fresh` across processes: several started on one out/ are one retraining.
//! `--fresh` retrains the runs whose results were committed before the retraining
//! began, and reuses those committed since. Several processes started with `--fresh` on
//! one out/ are one retraining: each registers while it runs (a claim of its own under
//! out/.fresh/, with its heartbeat, named after the instant it started, in
//! nanoseconds), and takes as its cutoff the earliest start among the live
//! registrations, its own included. So a process that starts after another has already
//! committed a run reuses that run instead of training it again. A registration whose
//! process is gone (or silent past the claim timeout) no longer counts, and is removed.

use crate::cluster::claim::{self, Attempt, Claim};
use crate::cluster::process::Holder;
use crate::storage::out_dir::FRESH_DIR;
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// This process's part in a retraining: registered until dropped.
pub struct Retraining {
    _registration: Claim,
    /// Results committed before this are retrained, those since reused.
    pub since: SystemTime,
}

/// Registers this process as retraining under `out_dir` and finds when the retraining
/// began.
pub fn join(out_dir: &Path, claim_timeout: Duration) -> Result<Retraining> {
    let folder = out_dir.join(FRESH_DIR);
    fs::create_dir_all(&folder).with_context(|| format!("cannot create {}", folder.display()))?;
    let own = Holder::of_this_process();
    let started = SystemTime::now();
    let nanos = started
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let path = folder.join(format!("{nanos}-{}.claim", own.token));
    let registration = match claim::try_claim(&path, claim_timeout, &mut None)? {
        Attempt::Claimed(registration) => registration,
        Attempt::Held(holder) => bail!(
            "{} is already held by {}: tokens are unique, so this cannot happen",
            path.display(),
            holder.describe()
        ),
    };
    let mut since = started;
    for entry in fs::read_dir(&folder)
        .with_context(|| format!("cannot read {}", folder.display()))?
        .flatten()
    {
        let Some(start) = start_of(&entry.file_name().to_string_lossy()) else {
            continue;
        };
        match claim::inspect(&entry.path(), claim_timeout)? {
            Some(seen) if !seen.stale => since = since.min(start),
            // Its process is gone: nobody writes this name again.
            Some(_) => {
                let _ = fs::remove_file(entry.path());
            }
            None => {}
        }
    }
    Ok(Retraining {
        _registration: registration,
        since,
    })
}

/// When the process registered as `name` started: the name's leading nanoseconds.
fn start_of(name: &str) -> Option<SystemTime> {
    let nanos: u64 = name.split_once('-')?.0.parse().ok()?;
    Some(UNIX_EPOCH + Duration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retraining_begins_with_its_earliest_live_process() {
        let dir = tempfile::tempdir().unwrap();
        let first = join(dir.path(), Duration::from_secs(60)).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        let second = join(dir.path(), Duration::from_secs(60)).unwrap();
        assert_eq!(second.since, first.since, "the second joins the first");
        let first_since = first.since;
        drop((first, second));
        let alone = join(dir.path(), Duration::from_secs(60)).unwrap();
        assert!(alone.since > first_since && alone.since <= SystemTime::now());
        let left = fs::read_dir(dir.path().join(FRESH_DIR)).unwrap().count();
        assert_eq!(left, 1, "only the live registration is there");
    }

    #[test]
    fn a_gone_process_registration_does_not_count_and_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join(FRESH_DIR);
        fs::create_dir_all(&folder).unwrap();
        let mut gone = Holder::of_this_process();
        gone.pid = u32::MAX - 1;
        let stale = folder.join("1000-gone.claim");
        fs::write(&stale, serde_yaml::to_string(&gone).unwrap()).unwrap();
        let retraining = join(dir.path(), Duration::from_secs(60)).unwrap();
        assert!(retraining.since > start_of("1000-gone.claim").unwrap());
        assert!(!stale.exists());
    }
}
