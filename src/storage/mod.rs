//! How cellnets writes to disk: atomic writes and the tables and YAML files it reads
//! back (`files`), and the fixed names it keeps directly under out/ (`out_dir`).
//!
//! Imports nothing of the crate: every other folder builds on it.

pub mod files;
pub mod out_dir;
