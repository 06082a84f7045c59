//! The `cellnets` binary: parses the command line, hands it to `cli`, and reports how
//! it ended. A libtorch error, which tch raises as a panic, is reported in one line.

use cellnets::cli::{self, Cli, Stopped};
use cellnets::cluster::interrupt;
use cellnets::precision::allocator;
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // tch reports libtorch errors as panics, whose payload ends in a long C++ backtrace;
    // the run's error message says what failed, so the panic itself shows one line.
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| l.to_string()).unwrap_or_default();
        eprintln!(
            "panic at {location}: {}",
            cellnets::panic_summary(info.payload())
        );
    }));
    allocator::keep_freed_memory();
    match cli::run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.is::<Stopped>() => {
            eprintln!("{error}");
            ExitCode::from(interrupt::EXIT_CODE)
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
