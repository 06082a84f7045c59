//! cellnets: neural-network studies on MedMNIST image sets, driven by one YAML
//! manifest and run on libtorch. Data flows one way: manifest -> plan of runs ->
//! trainer -> outputs.
//!
//! One folder per concern, from the bottom up: a folder imports only the folders
//! declared before it here, never one after (`scripts/code_shape.py --check` holds CI
//! to that), so the layers read from the disk up to the command line.

/// Messages for the person running cellnets, from any layer (the progress bars listen).
pub mod notes;

/// Atomic writes, tables, the fixed names under out/.
pub mod storage;

/// Each run's own random streams.
pub mod random;

/// TF32, cuDNN's autotuner and bf16 autocast: libtorch's switches, off by default;
/// channels-last and a malloc that keeps freed memory, on by default on a CPU.
pub mod precision;

/// 95% intervals (Wilson, bootstrap, Student's t) and McNemar's exact test.
pub mod statistics;

/// The networks a manifest can name.
pub mod models;

/// The manifest, its plan of runs, the MedMNIST catalog, the original study's numbers.
pub mod study;

/// npz files, image folders, downloads, pixels in memory or on disk.
pub mod data;

/// Accuracy, balanced accuracy, F1, AUC and confusion matrices, with their intervals.
pub mod metrics;

/// The training loop, free of I/O.
pub mod train;

/// PNG and SVG figures.
pub mod figures;

/// Run folders, summary.csv, winner.yaml.
pub mod outputs;

/// A saved run evaluated, predicting, exported.
pub mod inference;

/// Claims, locks, shards, signals, SLURM scripts, status.
pub mod cluster;

/// Stages, runs and callbacks wired together.
pub mod runner;

/// report.md, report.html and their figures.
pub mod report;

/// `cellnets serve`: the study's page, live, over HTTP.
pub mod serve;

/// One file per subcommand.
pub mod cli;

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
