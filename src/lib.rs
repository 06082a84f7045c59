//! cellnets: neural-network studies on MedMNIST image sets, driven by one YAML
//! manifest and run on libtorch. Data flows one way: manifest -> plan of runs ->
//! trainer -> outputs.
//!
//! The files are moving into folders by concern; until their paths follow, each
//! module keeps its old name here.

#[path = "runner/bench.rs"]
pub mod bench;
#[path = "runner/callbacks.rs"]
pub mod callbacks;
#[path = "study/catalog.rs"]
pub mod catalog;
#[path = "cluster/claim.rs"]
pub mod claim;
#[path = "data/dataset.rs"]
pub mod data;
#[path = "data/download.rs"]
pub mod download;
#[path = "inference/export.rs"]
pub mod export;
pub mod figures;
#[path = "cluster/file_lock.rs"]
pub mod file_lock;
#[path = "storage/files.rs"]
pub mod files;
#[path = "data/image_folder.rs"]
pub mod image_folder;
#[path = "data/images.rs"]
pub mod images;
#[path = "cluster/interrupt.rs"]
pub mod interrupt;
#[path = "cli/list.rs"]
pub mod list;
#[path = "study/manifest.rs"]
pub mod manifest;
pub mod metrics;
#[path = "models/spec.rs"]
pub mod models;
#[path = "data/npz.rs"]
pub mod npz;
#[path = "storage/out_dir.rs"]
pub mod out_dir;
#[path = "study/plan.rs"]
pub mod plan;
#[path = "inference/predict.rs"]
pub mod predict;
#[path = "runner/progress.rs"]
pub mod progress;
pub mod random;
pub mod report;
#[path = "outputs/run_folder.rs"]
pub mod run_folder;
#[path = "runner/stages.rs"]
pub mod runner;
#[path = "inference/saved.rs"]
pub mod saved;
#[path = "cluster/shard.rs"]
pub mod shard;
#[path = "cluster/slurm.rs"]
pub mod slurm;
#[path = "cluster/status.rs"]
pub mod status;
#[path = "study/reference.rs"]
pub mod study;
#[path = "outputs/summary.rs"]
pub mod summary;
#[path = "study/task.rs"]
pub mod task;
#[path = "train/fit.rs"]
pub mod train;
#[path = "runner/trainer.rs"]
pub mod trainer;
#[path = "runner/transfer.rs"]
pub mod transfer;
#[path = "outputs/winners.rs"]
pub mod winners;

/// The first line of a panic's message. tch reports libtorch errors as panics whose
/// message ends in a long C++ backtrace; the first line says what went wrong.
pub fn panic_summary(payload: &(dyn std::any::Any + Send)) -> &str {
    let message = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("");
    message.lines().next().unwrap_or("")
}
