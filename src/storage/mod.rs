//! How cellnets writes to disk, below every other folder: it imports nothing of the
//! crate. Atomic writes and the tables and YAML files it reads back are in `files`, the
//! fixed names it keeps directly under out/ in `out_dir`.

pub mod files;
pub mod out_dir;
