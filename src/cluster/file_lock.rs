//! A short-lived lock between processes that may share out/ over NFS: a file created
//! exclusively, held for the milliseconds a read-modify-write of a shared file takes
//! (a stage's summary.csv and winner.yaml). A lock older than `STALE_AFTER` was left by
//! a process that died holding it, and is broken.

use anyhow::{bail, Context, Result};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

const STALE_AFTER: Duration = Duration::from_secs(30);
/// Longer than `STALE_AFTER`, so a waiter always outlives a dead holder's lock.
const GIVE_UP_AFTER: Duration = Duration::from_secs(90);

/// Runs `work` while holding the lock file `path`.
pub fn with_lock<T>(path: &Path, work: impl FnOnce() -> Result<T>) -> Result<T> {
    let _held = acquire(path)?;
    work()
}

struct Held(PathBuf);

impl Drop for Held {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

fn acquire(path: &Path) -> Result<Held> {
    let start = Instant::now();
    loop {
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
        {
            Ok(_) => return Ok(Held(path.to_path_buf())),
            Err(error) if error.kind() == ErrorKind::AlreadyExists => {}
            Err(error) => {
                return Err(error).with_context(|| format!("cannot create {}", path.display()))
            }
        }
        if is_stale(path) {
            // Renamed first, so that of two processes breaking it, one does.
            let aside = path.with_extension(format!("broken-{}", std::process::id()));
            if fs::rename(path, &aside).is_ok() {
                let _ = fs::remove_file(&aside);
            }
            continue;
        }
        if start.elapsed() > GIVE_UP_AFTER {
            bail!(
                "{} has been locked for over {} s: if no cellnets process is running, \
                 delete it",
                path.display(),
                GIVE_UP_AFTER.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn is_stale(path: &Path) -> bool {
    fs::metadata(path)
        .and_then(|meta| meta.modified())
        .ok()
        .and_then(|modified| SystemTime::now().duration_since(modified).ok())
        .is_some_and(|age| age > STALE_AFTER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn holders_exclude_each_other_and_a_dead_holders_lock_is_broken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".lock");
        let inside = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..20 {
                        with_lock(&path, || {
                            assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0);
                            std::thread::sleep(Duration::from_millis(1));
                            inside.fetch_sub(1, Ordering::SeqCst);
                            Ok(())
                        })
                        .unwrap();
                    }
                });
            }
        });
        fs::write(&path, "").unwrap();
        crate::storage::files::set_modified(&path, SystemTime::now() - Duration::from_secs(120))
            .unwrap();
        assert_eq!(with_lock(&path, || Ok(7)).unwrap(), 7);
        assert!(!path.exists());
    }
}
