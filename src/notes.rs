//! Messages for the person running cellnets, from any layer: a note goes to whoever
//! listens (the progress bars, which print it above themselves instead of tearing
//! through them), and to stderr when nobody does. Library code says things here,
//! never with `eprintln!`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

type Listener = Arc<dyn Fn(&str) + Send + Sync>;

/// The listener, with the number its `Listening` guard knows it by.
static LISTENER: RwLock<Option<(u64, Listener)>> = RwLock::new(None);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Tells the person running cellnets `message` (one line or more, no trailing newline).
pub fn say(message: &str) {
    let listener = LISTENER
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .as_ref()
        .map(|(_, listener)| Arc::clone(listener));
    match listener {
        Some(listener) => listener(message),
        // Not `eprintln!`, which panics when stderr is closed: a note is not worth a crash.
        None => {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "{message}");
        }
    }
}

/// Sends every note to `listener` until the returned guard is dropped. A later
/// listener takes over; dropping an earlier guard then leaves the later one in place.
pub fn listen(listener: impl Fn(&str) + Send + Sync + 'static) -> Listening {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    *LISTENER
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((id, Arc::new(listener)));
    Listening { id }
}

/// Keeps a listener installed; notes go back to stderr when it is dropped.
pub struct Listening {
    id: u64,
}

impl Drop for Listening {
    fn drop(&mut self) {
        let mut slot = LISTENER
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if slot.as_ref().is_some_and(|(id, _)| *id == self.id) {
            *slot = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn notes_reach_the_listener_while_it_listens() {
        let heard = Arc::new(Mutex::new(Vec::new()));
        let ear = Arc::clone(&heard);
        let listening = listen(move |note| ear.lock().unwrap().push(note.to_string()));
        say("first");
        drop(listening);
        say("to stderr");
        assert_eq!(*heard.lock().unwrap(), ["first"]);
    }
}
