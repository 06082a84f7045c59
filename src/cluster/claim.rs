//! A run's claim file: exclusive create, heartbeat, stale takeover. Claims let several
//! cellnets processes (threads of one, processes on one machine, or machines sharing
//! out/ over NFS) train each run once. A claim is a file created exclusively (`O_EXCL`,
//! which NFS honours where `flock` may not) beside the run's folder, naming its holder;
//! a thread of the holder refreshes its modification time while the run trains. A claim
//! is stale when its holder is a process of this host that is gone, or when its
//! heartbeat is older than the timeout (the holder's machine died or lost the file
//! system); a stale claim is taken over.

pub use crate::cluster::process::Holder;
use crate::storage::files::{read_yaml, set_modified};
use anyhow::{Context, Result};
use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, SystemTime};

/// How long a claim may go without a heartbeat before others take it over.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// A claim as another process sees it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub holder: Holder,
    /// Time since the holder's last heartbeat.
    pub silent_for: Duration,
    pub stale: bool,
}

/// Reads the claim at `path`; none when there is none. A claim file being written
/// (empty or partial) counts as live and unnamed.
pub fn inspect(path: &Path, timeout: Duration) -> Result<Option<Seen>> {
    let modified = match fs::metadata(path) {
        Ok(meta) => meta.modified().unwrap_or_else(|_| SystemTime::now()),
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
    };
    let silent_for = SystemTime::now()
        .duration_since(modified)
        .unwrap_or_default();
    let holder = match read_yaml::<Holder>(path) {
        Ok(Some(holder)) => holder,
        Ok(None) => return Ok(None),
        // A claim is written in one small write after its creation: a reader may see it
        // empty for an instant. It is judged by its heartbeat alone.
        Err(_) => Holder {
            host: "?".into(),
            pid: 0,
            slurm_job: None,
            started: 0,
            token: String::new(),
        },
    };
    Ok(Some(Seen {
        stale: holder.is_gone() || silent_for > timeout,
        holder,
        silent_for,
    }))
}

/// What trying to claim a run gave.
pub enum Attempt {
    /// This process holds the run until the claim is dropped.
    Claimed(Claim),
    /// Another live process (or thread) holds it.
    Held(Holder),
}

/// A held claim: its heartbeat runs until it is dropped, which removes the file.
pub struct Claim {
    path: PathBuf,
    token: String,
    stop: Arc<AtomicBool>,
    heartbeat: Option<thread::JoinHandle<()>>,
}

/// Claims the run whose claim file is `path`, taking over a stale claim; `taken_over`
/// receives the stale holder when one was replaced.
pub fn try_claim(
    path: &Path,
    timeout: Duration,
    taken_over: &mut Option<Holder>,
) -> Result<Attempt> {
    // Two rounds: a stale claim removed in the first leaves the file free for the second.
    for _ in 0..2 {
        let holder = Holder::of_this_process();
        match create_exclusively(path, &holder)? {
            true => return Ok(Attempt::Claimed(Claim::start(path, holder, timeout))),
            false => match inspect(path, timeout)? {
                None => continue,
                Some(seen) if !seen.stale => return Ok(Attempt::Held(seen.holder)),
                Some(seen) => {
                    if remove_stale(path, &seen.holder, timeout)? {
                        *taken_over = Some(seen.holder);
                    }
                }
            },
        }
    }
    match inspect(path, timeout)? {
        Some(seen) => Ok(Attempt::Held(seen.holder)),
        None => anyhow::bail!(
            "{} keeps appearing and disappearing: is another cellnets process taking claims \
             over with a much shorter --claim-timeout?",
            path.display()
        ),
    }
}

/// Creates `path` with `holder` in it; false when it exists.
fn create_exclusively(path: &Path, holder: &Holder) -> Result<bool> {
    let mut file = match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(file) => file,
        Err(error) if error.kind() == ErrorKind::AlreadyExists => return Ok(false),
        Err(error) => {
            return Err(error).with_context(|| {
                format!(
                    "cannot create the claim {}: is the output folder writable?",
                    path.display()
                )
            })
        }
    };
    let text = serde_yaml::to_string(holder)?;
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(error) = written {
        // An empty claim (a full disk) would hold the run for the whole timeout.
        let _ = fs::remove_file(path);
        return Err(error).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(true)
}

/// Removes the stale claim of `stale` at `path`; true when it did. Takers judge and
/// remove under a short lock of their own (`<run>.takeover`), and remove only a claim
/// that still bears the stale holder's token and is still stale: a claim written since
/// (by another taker, or the holder's heartbeat come back) is never touched. Moving
/// a claim aside without the lock would free its name for an instant, long enough for
/// a third process to claim the run beside the claim's owner.
fn remove_stale(path: &Path, stale: &Holder, timeout: Duration) -> Result<bool> {
    crate::cluster::file_lock::with_lock(&path.with_extension("takeover"), || {
        match inspect(path, timeout)? {
            Some(seen) if seen.stale && seen.holder.token == stale.token => {}
            _ => return Ok(false),
        }
        match fs::remove_file(path) {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == ErrorKind::NotFound => Ok(false),
            Err(error) => {
                Err(error).with_context(|| format!("cannot take over {}", path.display()))
            }
        }
    })
}

impl Claim {
    fn start(path: &Path, holder: Holder, timeout: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        // Several beats per timeout, so one late beat never makes a live claim stale.
        let every = (timeout / 4).clamp(Duration::from_millis(200), Duration::from_secs(60));
        let heartbeat = {
            let (path, stop) = (path.to_path_buf(), stop.clone());
            thread::spawn(move || beat(&path, every, &stop))
        };
        Claim {
            path: path.to_path_buf(),
            token: holder.token,
            stop,
            heartbeat: Some(heartbeat),
        }
    }

    /// Whether the claim file is still this claim: false once another process took it
    /// over (after this one was silent past the timeout).
    pub fn still_held(&self) -> bool {
        self.current_holder()
            .is_some_and(|holder| holder.token == self.token)
    }

    fn current_holder(&self) -> Option<Holder> {
        read_yaml::<Holder>(&self.path).ok().flatten()
    }

    /// Fails with `ClaimLost` once another process took the run over: this one must not
    /// write another epoch or a result into the run's folder.
    pub fn check_held(&self) -> Result<(), ClaimLost> {
        match self.current_holder() {
            Some(holder) if holder.token == self.token => Ok(()),
            holder => Err(ClaimLost {
                path: self.path.clone(),
                holder,
            }),
        }
    }
}

/// A claim another process took over while this one still trained the run (it was
/// silent past the timeout: a suspended machine, a file-system outage).
#[derive(Debug, thiserror::Error)]
#[error(
    "{}: another process took this run over{} after this one was silent past the claim \
     timeout; this one stops without committing",
    path.display(),
    holder.as_ref().map(|holder| format!(" ({})", holder.describe())).unwrap_or_default()
)]
pub struct ClaimLost {
    pub path: PathBuf,
    /// Who holds it now; none when the file is gone (the taker finished).
    pub holder: Option<Holder>,
}

/// Refreshes the claim's modification time every `every` until `stop`.
fn beat(path: &Path, every: Duration, stop: &AtomicBool) {
    let tick = Duration::from_millis(100).min(every);
    let mut since = Duration::ZERO;
    while !stop.load(Ordering::Relaxed) {
        thread::sleep(tick);
        since += tick;
        if since >= every {
            since = Duration::ZERO;
            // A missed beat is made up by the next one.
            let _ = set_modified(path, SystemTime::now());
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(heartbeat) = self.heartbeat.take() {
            let _ = heartbeat.join();
        }
        // Only this claim's own file goes: after a takeover the file is another's.
        if self.still_held() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `path` as a live claim of a process on another host, and returns it.
    fn claim_from_another_machine(path: &Path) -> Holder {
        let holder = Holder {
            host: "another-machine".into(),
            ..Holder::of_this_process()
        };
        fs::write(path, serde_yaml::to_string(&holder).unwrap()).unwrap();
        holder
    }

    fn claimed(path: &Path, timeout: Duration) -> Option<Claim> {
        match try_claim(path, timeout, &mut None).unwrap() {
            Attempt::Claimed(claim) => Some(claim),
            Attempt::Held(_) => None,
        }
    }

    #[test]
    fn a_claim_is_held_until_dropped_and_then_free() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.claim");
        let first = claimed(&path, DEFAULT_TIMEOUT).expect("free at first");
        assert!(first.still_held());
        assert!(
            claimed(&path, DEFAULT_TIMEOUT).is_none(),
            "held by a live pid"
        );
        drop(first);
        assert!(!path.exists());
        assert!(claimed(&path, DEFAULT_TIMEOUT).is_some());
    }

    #[test]
    fn the_claim_of_a_dead_process_of_this_host_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.claim");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = Holder {
            pid: dead,
            ..Holder::of_this_process()
        };
        fs::write(&path, serde_yaml::to_string(&stale).unwrap()).unwrap();
        let mut taken_over = None;
        let Attempt::Claimed(claim) = try_claim(&path, DEFAULT_TIMEOUT, &mut taken_over).unwrap()
        else {
            panic!("a dead holder's claim is stale")
        };
        assert_eq!(taken_over, Some(stale));
        assert!(claim.still_held());
    }

    #[test]
    fn a_claim_taken_over_says_so_to_its_old_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.claim");
        let claim = claimed(&path, DEFAULT_TIMEOUT).unwrap();
        claim.check_held().unwrap();
        let taker = claim_from_another_machine(&path);
        let lost = claim.check_held().unwrap_err();
        assert_eq!(lost.holder, Some(taker));
        assert!(lost.to_string().contains("another-machine"), "{lost}");
        drop(claim);
        assert!(path.exists(), "the taker's claim stays");
    }

    #[test]
    fn a_claim_silent_past_the_timeout_is_stale_and_a_beating_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.claim");
        claim_from_another_machine(&path);
        let timeout = Duration::from_millis(800);
        assert!(claimed(&path, timeout).is_none(), "fresh");
        set_modified(&path, SystemTime::now() - Duration::from_secs(5)).unwrap();
        let claim = claimed(&path, timeout).expect("silent for 5 s, past 0.8 s");
        // Its own heartbeat keeps it live well past the timeout.
        thread::sleep(Duration::from_millis(2000));
        assert!(!inspect(&path, timeout).unwrap().unwrap().stale);
        assert!(claim.still_held());
    }

    #[test]
    fn racing_processes_never_both_take_over_one_stale_claim() {
        // The race is a matter of microseconds: many rounds make a loser likely to
        // land in it (moving a live claim aside let a third racer in, about one
        // round in 50 on two cores).
        for _ in 0..100 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("run.claim");
            claim_from_another_machine(&path);
            set_modified(&path, SystemTime::now() - Duration::from_secs(60)).unwrap();
            let claims: Vec<Option<Claim>> = thread::scope(|scope| {
                let racers: Vec<_> = (0..8)
                    .map(|_| scope.spawn(|| claimed(&path, Duration::from_secs(10))))
                    .collect();
                racers.into_iter().map(|r| r.join().unwrap()).collect()
            });
            assert_eq!(claims.iter().filter(|claim| claim.is_some()).count(), 1);
        }
    }
}
