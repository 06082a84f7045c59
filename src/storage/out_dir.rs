//! What cellnets keeps directly under out/ beside the stage folders: the report, the
//! SLURM scripts and the registrations of `--fresh` processes. A stage may not be named
//! after one of them (see `manifest`).

pub const REPORT_MD: &str = "report.md";
/// The same report as one self-contained page, beside report.md.
pub const REPORT_HTML: &str = "report.html";
/// The folder beside report.md that holds its figures and tables.
pub const REPORT_DIR: &str = "report";
/// `cellnets slurm` writes its scripts and the tasks' logs here.
pub const SLURM_DIR: &str = "slurm";
/// Processes training with `--fresh` register here while they run (see
/// `cluster::fresh`); a dot-folder, which no stage can be named.
pub const FRESH_DIR: &str = ".fresh";
