//! Every integration test, in one test binary. Each file beside this one is a module
//! of it (`cargo test --test tests kill::` runs tests/kill.rs's tests), not a binary of
//! its own, so that `cargo test` links libtorch into one test binary rather than into
//! one per file, which took minutes of linking (Cargo.toml: `autotests = false`).
//!
//! The tests share one process, and so its global state: libtorch's generator above
//! all, which every seeded draw here takes `common::torch_generator()` for.

mod common;

mod bad_input;
mod browser;
mod commands;
mod device_generic;
mod disk_full;
mod doc_examples;
mod ensemble;
mod failures;
mod figures;
mod file_modes;
mod fuzz;
mod halving;
mod image_folder;
mod jobs;
mod kill;
mod manifests;
mod memory;
mod predict;
mod races;
mod random_draws;
mod real_data;
mod report;
mod serve;
mod shard;
mod slurm;
mod stepwise;
mod study;
mod tasks;
mod tensorboard;
mod tpe;
mod winners;
