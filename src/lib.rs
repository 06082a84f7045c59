//! cellnets: neural-network studies on MedMNIST image sets, driven by one YAML
//! manifest and run on libtorch. Data flows one way: manifest -> plan of runs ->
//! trainer -> outputs.

pub mod bench;
pub mod callbacks;
pub mod catalog;
pub mod claim;
pub mod data;
pub mod download;
pub mod export;
pub mod figures;
pub mod file_lock;
pub mod files;
pub mod image_folder;
pub mod images;
pub mod interrupt;
pub mod list;
pub mod manifest;
pub mod metrics;
pub mod models;
pub mod npz;
pub mod out_dir;
pub mod plan;
pub mod predict;
pub mod progress;
pub mod random;
pub mod report;
pub mod run_folder;
pub mod runner;
pub mod saved;
pub mod shard;
pub mod slurm;
pub mod status;
pub mod study;
pub mod summary;
pub mod task;
pub mod train;
pub mod trainer;
pub mod transfer;
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
