//! What cellnets keeps directly under out/ beside the stage folders: the report and
//! the SLURM scripts. A stage may not be named after one of them (see `manifest`).

pub const REPORT_MD: &str = "report.md";
/// The folder beside report.md that holds its figures and tables.
pub const REPORT_DIR: &str = "report";
/// `cellnets slurm` writes its scripts and the tasks' logs here.
pub const SLURM_DIR: &str = "slurm";
