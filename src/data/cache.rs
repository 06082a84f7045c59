//! Uncompressed disk copies of an npz file's image arrays, for sets whose pixels do not
//! fit in memory. A copy is written once, a buffer at a time, then read row by row per
//! batch; it is named after the npz file's MD5, so a replaced file never meets an old
//! copy, and appears only once complete.

use crate::data::npz::{Array, Npz};
use crate::storage::files::can_write_in;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Where copies go: `CELLNETS_CACHE_DIR`, else `.cellnets-cache` beside the data files
/// when that folder can be written, else `~/.cache/cellnets/data`.
pub fn cache_dir(data_dir: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("CELLNETS_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let beside = data_dir.join(".cellnets-cache");
    if std::fs::create_dir_all(&beside).is_ok() && can_write_in(&beside).is_ok() {
        return beside;
    }
    let home = std::env::var_os("HOME").map_or_else(std::env::temp_dir, PathBuf::from);
    home.join(".cache/cellnets/data")
}

/// The uncompressed copy of `array` of `npz` (whose MD5 is `md5`) in `dir`, written
/// when missing.
pub fn uncompressed(npz: &Npz, array: &Array, md5: &str, dir: &Path) -> Result<PathBuf> {
    let stem = npz
        .path
        .file_stem()
        .map_or("data".into(), |stem| stem.to_string_lossy().into_owned());
    let path = dir.join(format!("{stem}-{}-{}.u8", &md5[..16], array.name));
    if path.is_file() {
        return Ok(path);
    }
    std::fs::create_dir_all(dir).with_context(|| {
        format!(
            "cannot create the image cache folder {}: make it writable or point \
             CELLNETS_CACHE_DIR at a folder with room for the set's images",
            dir.display()
        )
    })?;
    crate::notes::say(&format!(
        "writing an uncompressed copy of {}'s {} ({} MB) to {}",
        npz.path.display(),
        array.name,
        array.data_bytes() >> 20,
        path.display()
    ));
    crate::storage::files::write_atomically(&path, |part| {
        let file = std::fs::File::create(part)?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        npz.copy_data(array, &mut out)?;
        out.into_inner()
            .map_err(|error| error.into_error())?
            .sync_all()?;
        Ok(())
    })?;
    Ok(path)
}
