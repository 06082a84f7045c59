//! Sharing one out/ among processes, on one machine or a SLURM cluster. Its modules:
//! claims on runs (`claim`), short locks (`file_lock`), who holds a claim or lock
//! (`process`), static shares of a stage's runs (`shard`), one `--fresh` retraining
//! across processes (`fresh`), stopping and requeuing on a signal (`interrupt`), SLURM
//! job scripts (`slurm`) and what every run is doing (`status`).
//!
//! May import `outputs`, `train`, `study` and `storage`.

pub mod claim;
pub mod clean;
pub mod file_lock;
pub mod fresh;
pub mod interrupt;
pub mod process;
pub mod shard;
pub mod slurm;
pub mod status;
