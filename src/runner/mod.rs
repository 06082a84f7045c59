//! Where the pieces are wired together. Its modules: a manifest's stages in order, each
//! run claimed, trained and summarised (`stages`); a halving stage's runs rung by rung
//! (`halving`); one run from its plan to its files (`trainer`); the callbacks that
//! connect the I/O-free loop to files and claims (`callbacks`, `progress`); features of
//! an earlier stage's frozen layers (`transfer`); timing epochs (`bench`); and an
//! ensemble stage's members tested together (`ensemble`).
//!
//! May import every folder except `report` and `cli`.

pub mod bench;
pub mod callbacks;
pub mod ensemble;
mod halving;
pub mod progress;
mod stages;
pub mod trainer;
pub mod transfer;

pub use stages::{run, run_shared, Settings, Sharing};
