//! A finished (or interrupted) run put to use. It is opened from its folder and
//! evaluated on a data file (`saved`), classifies image files (`predict`), and is
//! written out as TorchScript (`export`); an ensemble of runs is used the same ways
//! (`ensemble`).
//!
//! May import `outputs`, `metrics`, `figures`, `train`, `data`, `models`, `study` and
//! `storage`.

pub mod ensemble;
pub mod export;
pub mod predict;
pub mod saved;
