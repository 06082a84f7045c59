//! The flag that stops training at the next batch, which signal handlers set. The loop
//! only asks whether a stop was requested; who requests it (a signal handler in
//! `cluster::interrupt`, a test) is not its concern, which keeps `train` below the
//! folders that share out/ among processes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

static REQUESTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// The flag itself, for signal handlers that set it (`signal_hook::flag::register`).
pub fn flag() -> &'static Arc<AtomicBool> {
    REQUESTED.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Whether a stop was asked for. The loop asks between batches: one relaxed load.
pub fn requested() -> bool {
    flag().load(Ordering::Relaxed)
}

/// Asks for a stop, as a signal does.
pub fn request() {
    flag().store(true, Ordering::Relaxed);
}

/// A run stopped by a signal between two epochs: nothing of it is lost but the epoch in
/// flight, and a rerun resumes it.
#[derive(Debug, thiserror::Error)]
#[error("stopped by a signal; the last committed epoch is kept: rerun to resume")]
pub struct Interrupted;

/// Fails with `Interrupted` once a stop was asked for.
pub fn check() -> Result<(), Interrupted> {
    if requested() {
        Err(Interrupted)
    } else {
        Ok(())
    }
}
