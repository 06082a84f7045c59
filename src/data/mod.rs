//! Image sets: npz files, image folders, downloads, and pixels in memory or on disk.
//! MedMNIST npz files (`npz`, found, checked and loaded by `dataset`), folders of
//! images (`image_folder`, `images`), downloads from Zenodo (`download`), and the
//! pixels kept in memory or in an on-disk cache (`pixels`, `cache`).
//!
//! May import `study`, `models` (a set's input shape) and `storage`.

pub mod cache;
mod dataset;
pub mod download;
pub mod image_folder;
pub mod images;
pub mod npz;
pub mod pixels;

pub use dataset::{
    data_dir, load, locate, memory_budget, open, parse_bytes, probe, set_memory_budget, Dataset,
    Datasets, NotMedMnist, Split,
};
pub use pixels::Images;
