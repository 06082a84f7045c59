//! A finished (or interrupted) run put to use: opened from its folder (`saved`), an
//! ensemble of runs (`ensemble`), either one scored on a data file (`eval`),
//! classifying image files (`predict`) and written out as TorchScript (`export`).
//!
//! May import `outputs`, `metrics`, `figures`, `train`, `data`, `models`, `study` and
//! `storage`.

pub mod ensemble;
pub mod eval;
pub mod export;
pub mod predict;
pub mod saved;
