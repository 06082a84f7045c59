//! The command line (clap): one file per subcommand, each parsing its options and
//! calling the library. Options that several commands share are grouped in `options`;
//! `main.rs` only parses and reports how the command ended.

mod bench;
mod clean;
mod eval;
mod export;
pub mod list;
mod options;
mod predict;
mod report;
mod serve;
mod slurm;
mod status;
mod train;

pub use train::Stopped;

use crate::storage::files::is_disk_full;
use anyhow::Result;
use clap::{Parser, Subcommand};

/// Runs the neural-network study described by a YAML manifest: every stage, or the
/// ones named with `only`. Each run writes out/<stage>/<run>/epochs.csv (a row per
/// epoch) and best.safetensors (the best epoch's weights); each stage writes
/// out/<stage>/summary.csv (a row per finished run). Rerunning skips finished runs and
/// resumes interrupted ones.
#[derive(Parser)]
#[command(name = "cellnets", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Without a subcommand, cellnets trains every stage of the manifest.
    #[command(flatten)]
    train: train::TrainArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Runs only the named stages.
    Only(train::OnlyArgs),
    /// Writes a SLURM job array per stage under out/slurm/ (a task per unfinished run,
    /// each stage after the stages it starts from, then a job that writes the report)
    /// and, with --submit, submits them. Rerun it after failures: only what has not
    /// finished is submitted.
    Slurm(slurm::SlurmArgs),
    /// Prints a line per stage (runs finished, training, waiting, diverged, failed; for
    /// a halving stage its rungs and the runs paused at a rung or halted; the winner) and
    /// each run training (with its pace), diverged, failed or left with a stale claim,
    /// from the files under out/; --runs lists every run.
    Status(status::StatusArgs),
    /// Times training epochs of the study's models on the real data (batch 32, SGD or
    /// another optimizer).
    Bench(bench::BenchArgs),
    /// Evaluates a saved run's best checkpoint on a data file: prints accuracy, balanced
    /// accuracy, macro F1, AUC and per-class scores, and writes them with the confusion
    /// matrix to <run>/eval/<file>-<split>/. A run that has not finished is scored at its
    /// best epoch so far; an ensemble (out/<stage>/ensemble) by its members' mean.
    Eval(eval::EvalArgs),
    /// Classifies image files (PNG, JPEG, TIFF, BMP, any size) with a saved run's best
    /// checkpoint. Each image is centre-cropped to a square, resized to the run's image
    /// size and converted to its channels, as MedMNIST prepared its images; the CSV has
    /// one row per file: the predicted class, every class's probability, or why the
    /// file could not be read. An ensemble (out/<stage>/ensemble) averages its members'
    /// probabilities.
    Predict(predict::PredictArgs),
    /// Writes a saved run's model as a TorchScript file (torch.jit.load in PyTorch): it
    /// takes float images (N, C, H, W) in [0, 1], prepared as `predict` prepares them,
    /// and returns class logits (an ensemble's: the log of its members' mean
    /// probabilities). ONNX is not available through libtorch; the error says how to
    /// convert the TorchScript file in Python.
    Export(export::ExportArgs),
    /// Writes out/report.md: every stage's tables and figures beside the study's
    /// numbers, the data overview, test confusion matrices and error analysis; and
    /// out/report.html, the same report as one self-contained page with interactive
    /// curves.
    Report(report::ReportArgs),
    /// Serves the study's page on http://127.0.0.1:8022/, live while it trains: every
    /// stage and run with its state, curves that grow as epochs land, the grid's heat
    /// map, the winners, a table of hyperparameters against results and a page per run.
    /// Read-only. On another --bind address every request needs the token in the URL.
    Serve(serve::ServeArgs),
    /// Prints each stage's runs with their trainable and frozen parameter counts.
    List(list::ListArgs),
    /// Drops the resume files (last weights and optimizer state) of the manifest's runs
    /// that have a result. A halving stage's runs keep them after they end, halted or
    /// finished, in case a larger budget continues them; without them such a run trains
    /// from its start. --dry-run only lists them. Runs of other settings are left alone.
    Clean(clean::CleanArgs),
}

/// Runs the command the line asked for.
pub fn run(cli: Cli) -> Result<()> {
    dispatch(cli).map_err(|error| {
        if is_disk_full(&error) {
            error.context(
                "the disk is full: free space on it, then rerun the same command. Every \
                 committed epoch, result and summary row is kept, and each run resumes from \
                 its last committed epoch. What could not be written",
            )
        } else {
            error
        }
    })
}

fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        None => train::run(cli.train),
        Some(Command::Only(args)) => train::run_only(args),
        Some(Command::Slurm(args)) => slurm::run(args),
        Some(Command::Status(args)) => status::run(args),
        Some(Command::Bench(args)) => bench::run(args),
        Some(Command::Eval(args)) => eval::run(args),
        Some(Command::Predict(args)) => predict::run(args),
        Some(Command::Export(args)) => export::run(args),
        Some(Command::Report(args)) => report::run(args),
        Some(Command::Serve(args)) => serve::run(args),
        Some(Command::List(args)) => list::run(args),
        Some(Command::Clean(args)) => clean::run(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_command_has_options_clap_accepts() {
        Cli::command().debug_assert();
    }
}
