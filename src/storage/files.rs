//! Atomic writes (a temporary file renamed over the target), and YAML and CSV tables
//! read back. A file is written through a temporary file in the same folder, renamed
//! over the target, so readers and crashes see the old file or the new one, never half
//! of one; it is read back with errors that say what to do about a damaged one.

use anyhow::{Context, Result};
use serde::{de::DeserializeOwned, Serialize};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Sets `path`'s modification time: a claim's heartbeat, and a lock's age.
pub fn set_modified(path: &Path, time: std::time::SystemTime) -> std::io::Result<()> {
    fs::OpenOptions::new()
        .append(true)
        .open(path)?
        .set_modified(time)
}

/// The mode a file cellnets writes is created with, less the umask, as any program's
/// files are: 0644 under umask 022, so a research group can read each other's out/.
/// (A temporary file is created 0600 unless its mode is given.)
const FILE_MODE: u32 = 0o666;
/// The same for a script meant to be run: 0755 under umask 022.
const EXECUTABLE_MODE: u32 = 0o777;

/// Runs `write` on a temporary path beside `path`, then renames it over `path`. The
/// temporary's name is unique (random, created exclusively), so processes writing the
/// same file at once never write into each other's temporary: the last rename wins.
pub fn write_atomically(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    write_atomically_with_mode(path, FILE_MODE, write)
}

/// `write_atomically` for a script: `text` in a file the umask lets its readers run.
pub fn write_executable(path: &Path, text: &str) -> Result<()> {
    write_atomically_with_mode(path, EXECUTABLE_MODE, |tmp| Ok(fs::write(tmp, text)?))
}

fn write_atomically_with_mode(
    path: &Path,
    mode: u32,
    write: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let name = path
        .file_name()
        .context("an output path ends in a file name")?;
    // The temporary keeps the extension last: VarStore::save picks its format from it.
    let suffix = path.extension().map_or(".tmp".to_string(), |extension| {
        format!(".tmp.{}", extension.to_string_lossy())
    });
    let prefix = format!(".{}.", name.to_string_lossy());
    let tmp = unique_file_with_mode(path, &prefix, &suffix, mode)
        .with_context(|| format!("cannot write {}", path.display()))?;
    write(&tmp)
        .and_then(|()| Ok(fs::rename(&tmp, path)?))
        .inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Creates an empty file in the folder of `path` (which need not exist) named
/// `<prefix><random><suffix>`, exclusively, and returns its path; the caller removes
/// or renames it.
pub fn unique_file_beside(path: &Path, prefix: &str, suffix: &str) -> std::io::Result<PathBuf> {
    unique_file_with_mode(path, prefix, suffix, FILE_MODE)
}

fn unique_file_with_mode(
    path: &Path,
    prefix: &str,
    suffix: &str,
    mode: u32,
) -> std::io::Result<PathBuf> {
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    // The mode is the one `open` is given, so the umask still applies.
    let file = tempfile::Builder::new()
        .prefix(prefix)
        .suffix(suffix)
        .permissions(fs::Permissions::from_mode(mode))
        .tempfile_in(folder)?;
    let (_, path) = file.keep().map_err(|error| error.error)?;
    Ok(path)
}

/// Whether files can be created in `folder`: a probe file of a unique name is created
/// and removed, so processes probing one folder at once never remove each other's.
pub fn can_write_in(folder: &Path) -> std::io::Result<()> {
    tempfile::Builder::new()
        .prefix(".cellnets-probe-")
        .tempfile_in(folder)?
        .close()
}

pub fn copy_atomically(from: &Path, to: &Path) -> Result<()> {
    write_atomically(to, |tmp| {
        fs::copy(from, tmp)?;
        Ok(())
    })
}

pub fn write_yaml(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_yaml::to_string(value)?;
    write_atomically(path, |tmp| Ok(fs::write(tmp, text)?))
}

/// The value in `path`; none when the file does not exist.
pub fn read_yaml<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    if !path.exists() {
        return Ok(None);
    }
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value = serde_yaml::from_str(&text).with_context(|| {
        format!(
            "{} is damaged or from another cellnets version: delete it to redo what it records",
            path.display()
        )
    })?;
    Ok(Some(value))
}

/// Replaces `path` by a CSV table.
pub fn write_table(path: &Path, header: &[String], rows: &[Vec<String>]) -> Result<()> {
    write_atomically(path, |tmp| {
        let mut writer = csv::Writer::from_path(tmp)?;
        writer.write_record(header)?;
        for row in rows {
            writer.write_record(row)?;
        }
        writer.flush()?;
        Ok(())
    })
}

/// A CSV file's header and rows; empty when the file does not exist yet.
pub fn read_table(path: &Path) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    if !path.exists() {
        return Ok((Vec::new(), Vec::new()));
    }
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let header = reader.headers()?.iter().map(String::from).collect();
    let rows = reader
        .records()
        .map(|record| Ok(record?.iter().map(String::from).collect()))
        .collect::<Result<_>>()
        .with_context(|| format!("{} is damaged: move it aside and rerun", path.display()))?;
    Ok((header, rows))
}

/// Whether `error` comes from a full disk or an exhausted quota: the OS's ENOSPC or
/// EDQUOT, or libtorch's checkpoint writer, which reports them as text.
pub fn is_disk_full(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        let full_kind = cause.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            )
        });
        let text = cause.to_string();
        full_kind
            || ["No space left on device", "Disk quota exceeded"]
                .iter()
                .any(|words| text.contains(words))
    })
}

/// Removes `path`; a file that is already gone is fine.
pub fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}
