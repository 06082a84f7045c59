//! Fetches a missing MedMNIST file from Zenodo, verified by MD5. It is moved into place
//! only once complete, so an interrupted download never looks like data.

use crate::storage::files::unique_file_beside;
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::Duration;

/// The official MedMNIST v2/MedMNIST+ record. `CELLNETS_DOWNLOAD_URL` replaces it (a mirror).
pub const ZENODO_FILES: &str = "https://zenodo.org/records/10519652/files";

pub fn ensure_present(path: &Path) -> Result<()> {
    if path.is_file() {
        return Ok(());
    }
    if path.is_dir() {
        bail!(
            "{} is a folder, but cellnets reads the data from a file of that name: remove or \
             rename the folder and put the npz file there (or let cellnets download it), or \
             point --data-dir (or CELLNETS_DATA_DIR) at the folder that holds the file",
            path.display()
        );
    }
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .context("a data file path must end in a file name")?;
    let base = std::env::var("CELLNETS_DOWNLOAD_URL").unwrap_or_else(|_| ZENODO_FILES.into());
    let url = format!("{}/{name}?download=1", base.trim_end_matches('/'));
    // Files of the collection are verified by their official MD5; any other is checked
    // by structure when it is read.
    let md5 = crate::study::catalog::official_md5(name);
    fetch(&url, path, md5).with_context(|| {
        format!(
            "{} is missing and could not be downloaded from {url}. Download it elsewhere and \
             put it at that path, or point --data-dir (or CELLNETS_DATA_DIR) at a folder that has it",
            path.display()
        )
    })
}

/// Downloads `url` to `dest` through a `.part` file of its own, with a progress bar.
pub fn fetch(url: &str, dest: &Path, expected_md5: Option<&str>) -> Result<()> {
    if let Some(dir) = dest.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the data folder {}", dir.display()))?;
    }
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(15))
        .timeout_read(Duration::from_secs(60))
        .build();
    let response = agent.get(url).call()?;
    let total = response
        .header("Content-Length")
        .and_then(|length| length.parse().ok());
    let bar = match total {
        Some(total) => ProgressBar::new(total).with_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("a valid template"),
        ),
        None => ProgressBar::new_spinner(),
    };
    bar.set_message(format!("downloading {}", dest.display()));
    if bar.is_hidden() {
        crate::notes::say(&format!("downloading {url} to {}", dest.display()));
    }

    // Of a name of its own: the tasks of a SLURM array may all download the file at once.
    let name = dest.file_name().unwrap_or_default().to_string_lossy();
    let part = unique_file_beside(dest, &format!("{name}."), ".part")
        .with_context(|| format!("cannot write beside {}", dest.display()))?;
    let digest = copy_with_md5(bar.wrap_read(response.into_reader()), &part);
    bar.finish_and_clear();
    let digest = digest.inspect_err(|_| {
        let _ = fs::remove_file(&part);
    })?;
    if let Some(expected) = expected_md5 {
        if digest != expected {
            let _ = fs::remove_file(&part);
            bail!("the download's MD5 is {digest}, expected {expected}: it is damaged");
        }
    }
    fs::rename(&part, dest)
        .with_context(|| format!("cannot move the download into {}", dest.display()))
}

/// The MD5 of a file, as hex.
pub fn file_md5(path: &Path) -> Result<String> {
    let mut file =
        fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut md5 = md5::Context::new();
    io::copy(&mut file, &mut md5).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(format!("{:x}", md5.compute()))
}

fn copy_with_md5(mut reader: impl Read, path: &Path) -> Result<String> {
    let mut file =
        fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    let mut md5 = md5::Context::new();
    let mut buffer = vec![0; 1 << 16];
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error).context("the download broke off"),
        };
        md5.consume(&buffer[..n]);
        file.write_all(&buffer[..n])
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    file.sync_all()?;
    Ok(format!("{:x}", md5.compute()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Serves `body` once over HTTP on a loopback port and returns its URL.
    fn serve_once(body: Vec<u8>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/file.npz", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0; 4096];
            let _ = stream.read(&mut request);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(&body).unwrap();
        });
        url
    }

    #[test]
    fn a_verified_download_lands_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("sub/file.npz");
        let body = b"npz bytes".to_vec();
        let md5 = format!("{:x}", md5::compute(&body));
        fetch(&serve_once(body.clone()), &dest, Some(&md5)).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), body);
        let left: Vec<_> = fs::read_dir(dir.path().join("sub")).unwrap().collect();
        assert_eq!(left.len(), 1, "no .part file is left: {left:?}");
    }

    #[test]
    fn a_folder_in_place_of_the_data_file_is_named_as_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bloodmnist.npz");
        fs::create_dir(&path).unwrap();
        let message = format!("{:#}", ensure_present(&path).unwrap_err());
        assert!(
            message.contains("bloodmnist.npz is a folder") && !message.contains("missing"),
            "{message}"
        );
    }

    #[test]
    fn a_checksum_mismatch_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("file.npz");
        let error = fetch(&serve_once(b"tampered".to_vec()), &dest, Some("00")).unwrap_err();
        assert!(error.to_string().contains("MD5"), "{error}");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
