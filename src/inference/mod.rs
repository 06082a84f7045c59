//! A finished (or interrupted) run put to use: opened from its folder and evaluated on
//! a data file (`saved`), classifying image files (`predict`), and written out as
//! TorchScript (`export`).
//!
//! May import `outputs`, `metrics`, `figures`, `train`, `data`, `models`, `study` and
//! `storage`.

pub mod export;
pub mod predict;
pub mod saved;
