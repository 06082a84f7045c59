//! A study before anything trains. It holds the manifest as the user wrote it
//! (`manifest`), the plan of runs it expands to (`plan`), random search and successive
//! halving (`search`), ensemble stages (`ensemble`), the MedMNIST collection's facts
//! (`catalog`), the kinds of task (`task`) and the original study's models and numbers
//! (`reference`).
//!
//! May import `models` (a manifest names a model), `random` (sampled configurations)
//! and `storage`.

pub mod catalog;
pub mod ensemble;
pub mod manifest;
pub mod plan;
pub mod reference;
pub mod search;
pub mod task;
