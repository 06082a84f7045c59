//! The files a study leaves under out/: a run's folder (its epoch table, resume point,
//! best checkpoint and result, `run_folder`), a stage's summary.csv (`summary`) and
//! its winner.yaml (`winners`), a halving stage's runs as their folders show them, for the
//! promotion rule (`rungs`), a TPE stage's proposals and what each was drawn from
//! (`proposals`), an ensemble stage's result (`ensemble`), and with `--tensorboard` a run's
//! TensorBoard event files (`tensorboard`).
//!
//! May import `study`, `models`, `train` (the records it stores), `metrics`,
//! `statistics` (the spread across seeds) and `storage`.

pub mod ensemble;
pub mod proposals;
pub mod run_folder;
pub mod rungs;
pub mod summary;
pub mod tensorboard;
pub mod winners;
