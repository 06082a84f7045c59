//! Where the pieces are wired together: a manifest's stages in order (`stages`), over
//! the state one invocation keeps (`session`); each run claimed, trained or reused and
//! recorded (`attempt`); each stage's winner settled or waited for (`settle`); a
//! halving stage's runs rung by rung (`halving`); a TPE stage's proposals, drawn and
//! trained (`proposals`); one run from its plan to its files
//! (`trainer`); the callbacks that connect the I/O-free loop to files and claims
//! (`callbacks`, `progress`); features of an earlier stage's frozen layers
//! (`transfer`); timing epochs (`bench`); an ensemble stage's members tested together
//! (`ensemble`).
//!
//! May import every folder except `report` and `cli`.

mod attempt;
pub mod bench;
pub mod callbacks;
pub mod ensemble;
mod halving;
pub mod progress;
mod proposals;
mod session;
mod settle;
mod stages;
pub mod trainer;
pub mod transfer;

pub use session::{Sharing, TrainSettings};
pub use stages::{run, run_shared};
