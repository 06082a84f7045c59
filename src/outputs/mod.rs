//! The files a study leaves under out/. Each module keeps some: a run's folder (its
//! epoch table, resume point, best checkpoint and result, `run_folder`), a stage's
//! summary.csv (`summary`) and its winner.yaml (`winners`), a halving stage's rungs as
//! its runs' folders show them (`rungs`), an ensemble stage's result (`ensemble`), and
//! with `--tensorboard` a run's TensorBoard event files (`tensorboard`).
//!
//! May import `study`, `models`, `train` (the records it stores), `metrics`,
//! `statistics` (the spread across seeds) and `storage`.

pub mod ensemble;
pub mod run_folder;
pub mod rungs;
pub mod summary;
pub mod tensorboard;
pub mod winners;
