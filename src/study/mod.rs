//! A study before anything trains: the manifest as the user wrote it (`manifest`), the
//! plan of runs it expands to (`plan`), the MedMNIST collection's facts (`catalog`),
//! ensemble stages (`ensemble`), the kinds of task (`task`) and the original study's models and numbers
//! (`reference`).
//!
//! May import `models` (a manifest names a model) and `storage`.

pub mod catalog;
pub mod ensemble;
pub mod manifest;
pub mod plan;
pub mod reference;
pub mod task;
