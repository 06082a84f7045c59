//! A short-lived lock between processes that may share out/ over NFS, held for the
//! milliseconds a read-modify-write of a shared file takes (a stage's summary.csv and
//! winner.yaml, a claim's takeover). The lock is a file that names its holder with a
//! token of its own; it appears whole, in one step (written aside, then hard-linked to
//! its name, which fails when the name exists: atomic on NFS too).
//!
//! A lock whose holder is gone (a process of this host that has ended, or any lock older
//! than `STALE_AFTER`) is broken, and never two at once: a lock file is removed, by its
//! holder releasing it or by a breaker, only under the guard `<lock>.<token hash>.guard`
//! of that very token, created exclusively, and only while the file still bears that
//! token. A lock taken after the broken one has another token, so a breaker that judged
//! an old lock stale can never remove a new one, however late it acts. A guard is held
//! for the microseconds of one read and one remove, and is never broken: a process
//! killed inside one leaves the lock to be removed by hand, which the error says.

use crate::cluster::process::Holder;
use crate::storage::files::unique_file_beside;
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

struct Held {
    path: PathBuf,
    token: String,
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = remove_if_token(&self.path, &self.token);
    }
}

fn acquire(path: &Path) -> Result<Held> {
    let holder = Holder::of_this_process();
    let start = Instant::now();
    loop {
        if create(path, &holder)? {
            return Ok(Held {
                path: path.to_path_buf(),
                token: holder.token,
            });
        }
        match inspect(path) {
            // A stale lock whose guard is left by a process killed inside it cannot be
            // removed: wait, and give up below with the error that says so, instead of
            // retrying it without pause for ever.
            Some(Lock {
                holder,
                stale: true,
            }) if remove_if_token(path, &holder.token) => continue,
            seen if start.elapsed() > GIVE_UP_AFTER => {
                let by = seen.map_or(String::new(), |lock| {
                    format!(" by {}", lock.holder.describe())
                });
                bail!(
                    "{} has been locked{by} for over {} s: if no cellnets process is running, \
                     delete it{}",
                    path.display(),
                    GIVE_UP_AFTER.as_secs(),
                    guards_note(path)
                );
            }
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Creates the lock `path` naming `holder`, whole; false when it exists.
fn create(path: &Path, holder: &Holder) -> Result<bool> {
    let cannot = || format!("cannot create the lock {}", path.display());
    let aside = unique_file_beside(path, ".lock-", ".tmp").with_context(cannot)?;
    let linked = fs::write(&aside, serde_yaml::to_string(holder)?)
        .and_then(|()| fs::hard_link(&aside, path));
    let _ = fs::remove_file(&aside);
    match linked {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(error) => Err(error).with_context(cannot),
    }
}

/// A lock as a process waiting for it sees it.
struct Lock {
    holder: Holder,
    stale: bool,
}

/// The lock at `path`; none when there is none (or it is not a lock cellnets wrote,
/// which is then only waited for).
fn inspect(path: &Path) -> Option<Lock> {
    let modified = fs::metadata(path).and_then(|meta| meta.modified()).ok()?;
    let holder: Holder = serde_yaml::from_str(&fs::read_to_string(path).ok()?).ok()?;
    let age = SystemTime::now()
        .duration_since(modified)
        .unwrap_or_default();
    Some(Lock {
        stale: holder.is_gone() || age > STALE_AFTER,
        holder,
    })
}

/// Removes the lock at `path` if it still bears `token`, under that token's guard. When
/// another process holds the guard, it is removing this same lock (or died doing so):
/// nothing to do, and false.
fn remove_if_token(path: &Path, token: &str) -> bool {
    let guard = guard_path(path, token);
    if fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&guard)
        .is_err()
    {
        return false;
    }
    let bears_token = fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_yaml::from_str::<Holder>(&text).ok())
        .is_some_and(|holder| holder.token == token);
    if bears_token {
        let _ = fs::remove_file(path);
    }
    let _ = fs::remove_file(&guard);
    true
}

/// `<lock>.<hash of token>.guard`: one guard per lock generation.
fn guard_path(path: &Path, token: &str) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let hash = format!("{:x}", md5::compute(token));
    path.with_file_name(format!("{name}.{}.guard", &hash[..16]))
}

/// Guards left beside the lock `path` by a process killed inside one, for the error.
fn guards_note(path: &Path) -> String {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let prefix = format!("{name}.");
    let folder = path.parent().unwrap_or(Path::new("."));
    let guards: Vec<String> = fs::read_dir(folder)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|file| file.starts_with(&prefix) && file.ends_with(".guard"))
        .collect();
    if guards.is_empty() {
        String::new()
    } else {
        format!(" (and {} beside it)", guards.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::files::set_modified;
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
        assert!(!path.exists());
        let mut old = Holder::of_this_process();
        old.host = "elsewhere".into();
        fs::write(&path, serde_yaml::to_string(&old).unwrap()).unwrap();
        set_modified(&path, SystemTime::now() - Duration::from_secs(120)).unwrap();
        assert_eq!(with_lock(&path, || Ok(7)).unwrap(), 7);
        assert!(!path.exists());
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert!(left.is_empty(), "no guard or temporary is left: {left:?}");
    }

    #[test]
    fn the_lock_of_a_gone_process_of_this_host_is_broken_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".lock");
        let mut gone = Holder::of_this_process();
        gone.pid = u32::MAX - 1;
        fs::write(&path, serde_yaml::to_string(&gone).unwrap()).unwrap();
        let start = Instant::now();
        with_lock(&path, || Ok(())).unwrap();
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_breaker_that_judged_an_old_lock_never_removes_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".lock");
        let old = Holder::of_this_process();
        let held = acquire(&path).unwrap();
        // A late breaker acts on the token it judged stale before this lock was taken.
        remove_if_token(&path, &old.token);
        assert!(path.exists(), "the new holder's lock stays");
        drop(held);
        assert!(!path.exists());
    }
}
