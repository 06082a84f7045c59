//! MedMNIST npz files: finding, checking and loading them onto the training device,
//! with the study's holdout (leading share of the official train split trains, the
//! rest validates, the official test split tests).

use crate::download;
use crate::manifest::DatasetSpec;
use crate::models::InputShape;
use anyhow::{anyhow, bail, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Images as float (N, C, H, W) in [0, 1] and labels as int64 (N), on one device.
#[derive(Debug)]
pub struct Split {
    pub images: Tensor,
    pub labels: Tensor,
}

impl Split {
    /// Another handle on the same tensors, for another thread.
    pub fn shallow_clone(&self) -> Split {
        Split {
            images: self.images.shallow_clone(),
            labels: self.labels.shallow_clone(),
        }
    }

    pub fn len(&self) -> i64 {
        self.labels.size()[0]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug)]
pub struct Dataset {
    pub path: PathBuf,
    /// The file's MD5: part of a run's identity, so results never outlive their data.
    pub md5: String,
    pub train: Split,
    pub val: Split,
    pub test: Split,
    pub input: InputShape,
}

impl Dataset {
    /// Another handle on the same tensors, for another thread.
    pub fn shallow_clone(&self) -> Dataset {
        Dataset {
            path: self.path.clone(),
            md5: self.md5.clone(),
            train: self.train.shallow_clone(),
            val: self.val.shallow_clone(),
            test: self.test.shallow_clone(),
            input: self.input,
        }
    }
}

/// Where a dataset's file is looked for, from `--data-dir`, `CELLNETS_DATA_DIR` or `data/`.
pub fn data_dir(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("CELLNETS_DATA_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("data"))
}

/// Data sets opened as they are asked for, each file once, all on one device.
pub struct Datasets {
    dir: PathBuf,
    device: Device,
    opened: Vec<(DatasetSpec, Dataset)>,
}

impl Datasets {
    pub fn new(dir: &Path, device: Device) -> Self {
        Datasets {
            dir: dir.to_path_buf(),
            device,
            opened: Vec::new(),
        }
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// `spec`'s data, opened (and downloaded when missing) the first time.
    pub fn open(&mut self, spec: &DatasetSpec) -> Result<&Dataset> {
        let index = match self.opened.iter().position(|(known, _)| known == spec) {
            Some(index) => index,
            None => {
                let data = open(&self.dir, spec, self.device)?;
                self.opened.push((spec.clone(), data));
                self.opened.len() - 1
            }
        };
        Ok(&self.opened[index].1)
    }

    /// `spec`'s data when it has been opened.
    pub fn opened(&self, spec: &DatasetSpec) -> Option<&Dataset> {
        let found = self.opened.iter().find(|(known, _)| known == spec);
        found.map(|(_, data)| data)
    }

    /// Other handles on the same tensors, for another thread.
    pub fn shallow_clone(&self) -> Datasets {
        Datasets {
            dir: self.dir.clone(),
            device: self.device,
            opened: self
                .opened
                .iter()
                .map(|(spec, data)| (spec.clone(), data.shallow_clone()))
                .collect(),
        }
    }
}

/// Loads `spec`'s file from `dir`, downloading it first when it is missing.
pub fn open(dir: &Path, spec: &DatasetSpec, device: Device) -> Result<Dataset> {
    let path = locate(dir, spec)?;
    load(&path, spec.train_fraction, device)
}

/// `spec`'s npz file in `dir`: a folder data set's cache (built when missing), else the
/// MedMNIST file (downloaded when missing).
pub fn locate(dir: &Path, spec: &DatasetSpec) -> Result<PathBuf> {
    if spec.folder.is_some() {
        return crate::image_folder::cached_npz(dir, spec);
    }
    let path = dir.join(spec.file_name());
    download::ensure_present(&path)?;
    Ok(path)
}

/// Reads and checks an npz file by structure (keys, dtypes, shapes, label range), so
/// any faithful copy loads, and splits it as the study did.
pub fn load(path: &Path, train_fraction: f64, device: Device) -> Result<Dataset> {
    let file = read_checked(path)?;
    let rows = file.train.1.size()[0];
    let train_rows = (rows as f64 * train_fraction).floor() as i64;
    if train_rows < 1 || train_rows >= rows {
        bail!(
            "{}: a train_fraction of {train_fraction} leaves no rows to {} among its {rows} train rows",
            path.display(),
            if train_rows < 1 { "train on" } else { "validate on" }
        );
    }
    let to_device = |(images, labels): (Tensor, Tensor)| Split {
        images: images
            .to_device(device)
            .permute([0, 3, 1, 2])
            .to_kind(Kind::Float)
            / 255.0,
        labels: labels.to_device(device),
    };
    let (images, labels) = &file.train;
    let holdout =
        |start: i64, len: i64| (images.narrow(0, start, len), labels.narrow(0, start, len));
    Ok(Dataset {
        path: path.to_path_buf(),
        md5: crate::download::file_md5(path)?,
        train: to_device(holdout(0, train_rows)),
        val: to_device(holdout(train_rows, rows - train_rows)),
        test: to_device(file.test),
        input: file.input,
    })
}

/// The shape of `spec`'s data (downloading it when missing), without preparing it for training.
pub fn probe(dir: &Path, spec: &DatasetSpec) -> Result<InputShape> {
    let path = locate(dir, spec)?;
    Ok(read_checked(&path)?.input)
}

/// An npz file's official splits as read, once they passed every check.
struct CheckedFile {
    train: (Tensor, Tensor),
    test: (Tensor, Tensor),
    input: InputShape,
}

fn read_checked(path: &Path) -> Result<CheckedFile> {
    check_npz_sizes(path).map_err(|damage| {
        anyhow!(
            "{} is damaged: {damage}. Delete it so that it is downloaded again, or replace it \
             with the official file",
            path.display()
        )
    })?;
    let arrays: HashMap<String, Tensor> = Tensor::read_npz(path)
        .map_err(|error| {
            anyhow!(
                "cannot read {} as an npz file ({error}): it is truncated or corrupt; \
                 delete it so that it is downloaded again, or replace it with the official file",
                path.display()
            )
        })?
        .into_iter()
        .collect();
    let bad = |problem: NotMedMnist| {
        anyhow!(
            "{} is not a usable MedMNIST file: {problem}. Replace it with the official file \
             (see the README, section Data)",
            path.display()
        )
    };
    let [train, val, test] = ["train", "val", "test"].map(|split| read_split(&arrays, split));
    let (train, val, test) = (train.map_err(bad)?, val.map_err(bad)?, test.map_err(bad)?);
    for other in [&val, &test] {
        if other.0.size()[1..] != train.0.size()[1..] {
            return Err(bad(NotMedMnist::ShapesDiffer {
                train: train.0.size(),
                other: other.0.size(),
            }));
        }
    }
    let classes = check_labels(&train.1, &val.1, &test.1).map_err(bad)?;
    let [_, height, width, channels] = train.0.size()[..] else {
        unreachable!("read_split returns 4-d images")
    };
    Ok(CheckedFile {
        train,
        test,
        input: InputShape {
            channels,
            height,
            width,
            classes,
        },
    })
}

/// Why an npz file's bytes cannot be read as arrays: the file is damaged, and getting
/// it again is the fix.
#[derive(Debug, thiserror::Error)]
pub enum DamagedNpz {
    #[error("cannot open it ({0})")]
    Unopenable(std::io::Error),
    #[error("it is not a zip archive ({0})")]
    NotZip(zip::result::ZipError),
    #[error("entry {index}: {error}")]
    UnreadableEntry {
        index: usize,
        error: zip::result::ZipError,
    },
    #[error("`{0}` is too short to be an npy array")]
    TooShort(String),
    #[error("`{0}` is not an npy array")]
    NotNpy(String),
    #[error("`{0}` has an oversized header")]
    OversizedHeader(String),
    #[error("`{0}` has a truncated header")]
    TruncatedHeader(String),
    #[error("`{0}` has an unreadable header")]
    UnreadableHeader(String),
    #[error(
        "`{name}` should hold {expected} bytes of data for its shape but holds {}",
        .stored.map_or("fewer".to_string(), |n| n.to_string())
    )]
    WrongDataSize {
        name: String,
        expected: u64,
        /// None when the entry is smaller than its own header.
        stored: Option<u64>,
    },
}

/// Checks that every array in the npz holds as many bytes as its header's shape says.
/// tch trusts the header and would read past the end of a short array.
fn check_npz_sizes(path: &Path) -> Result<(), DamagedNpz> {
    let file = std::fs::File::open(path).map_err(DamagedNpz::Unopenable)?;
    let mut zip =
        zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(DamagedNpz::NotZip)?;
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|error| DamagedNpz::UnreadableEntry { index: i, error })?;
        let name = entry.name().to_string();
        let mut preamble = [0u8; 12];
        std::io::Read::read_exact(&mut entry, &mut preamble)
            .map_err(|_| DamagedNpz::TooShort(name.clone()))?;
        if &preamble[..6] != b"\x93NUMPY" {
            return Err(DamagedNpz::NotNpy(name));
        }
        let (header_len, prefix) = match preamble[6] {
            1 => (u16::from_le_bytes([preamble[8], preamble[9]]) as u64, 10),
            _ => (
                u32::from_le_bytes([preamble[8], preamble[9], preamble[10], preamble[11]]) as u64,
                12,
            ),
        };
        if header_len > 1 << 16 {
            return Err(DamagedNpz::OversizedHeader(name));
        }
        let mut header = vec![0u8; (header_len as usize + prefix).saturating_sub(12)];
        std::io::Read::read_exact(&mut entry, &mut header)
            .map_err(|_| DamagedNpz::TruncatedHeader(name.clone()))?;
        let header = [&preamble[12.min(prefix)..], &header[..]].concat();
        let header = String::from_utf8_lossy(&header);
        let Some(expected) = npy_data_bytes(&header) else {
            return Err(DamagedNpz::UnreadableHeader(name));
        };
        let stored = entry.size().checked_sub(prefix as u64 + header_len);
        if stored != Some(expected) {
            return Err(DamagedNpz::WrongDataSize {
                name,
                expected,
                stored,
            });
        }
    }
    Ok(())
}

/// Bytes of data an npy header announces: the product of its shape times the item size.
fn npy_data_bytes(header: &str) -> Option<u64> {
    let descr = header.split("'descr':").nth(1)?.split('\'').nth(1)?;
    let item: u64 = descr
        .trim_start_matches(['<', '>', '|', '='])
        .get(1..)?
        .parse()
        .ok()?;
    let shape = header.split("'shape':").nth(1)?;
    let shape = shape.split('(').nth(1)?.split(')').next()?;
    shape
        .split(',')
        .map(str::trim)
        .filter(|dim| !dim.is_empty())
        .try_fold(item, |bytes, dim| bytes.checked_mul(dim.parse().ok()?))
}

/// Why a readable npz file is not a usable MedMNIST file: replacing it with the
/// official file is the fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NotMedMnist {
    #[error("it has no `{key}` array (it has: {})", .present.join(", "))]
    MissingArray { key: String, present: Vec<String> },
    #[error("`{split}_images` holds {kind:?}, expected uint8")]
    ImagesNotUint8 { split: &'static str, kind: Kind },
    #[error("`{split}_images` has shape {shape:?}, expected (N, H, W, 3) or (N, H, W)")]
    ImageShape {
        split: &'static str,
        shape: Vec<i64>,
    },
    #[error("`{split}_labels` holds {kind:?}, expected integers")]
    LabelsNotIntegers { split: &'static str, kind: Kind },
    #[error("`{split}_labels` has shape {shape:?}, expected ({rows}, 1): one class per image")]
    LabelShape {
        split: &'static str,
        shape: Vec<i64>,
        rows: i64,
    },
    #[error("the {0} split is empty")]
    EmptySplit(&'static str),
    #[error("image shapes differ between splits: {train:?} vs {other:?}")]
    ShapesDiffer { train: Vec<i64>, other: Vec<i64> },
    #[error("a label is negative ({0})")]
    NegativeLabel(i64),
    #[error(
        "labels run up to {max}, but class(es) {} never occur in train_labels: a label is \
         out of range",
        list_classes(.missing)
    )]
    ClassesMissingFromTrain { max: i64, missing: Vec<i64> },
}

/// The first ten classes, then `...`.
fn list_classes(classes: &[i64]) -> String {
    let shown: Vec<String> = classes.iter().take(10).map(i64::to_string).collect();
    let more = if classes.len() > 10 { ", ..." } else { "" };
    format!("{}{more}", shown.join(", "))
}

/// A split's images as uint8 (N, H, W, C) and labels as int64 (N); grey sets come
/// without a channel axis.
fn read_split(
    arrays: &HashMap<String, Tensor>,
    split: &'static str,
) -> Result<(Tensor, Tensor), NotMedMnist> {
    let get = |key: String| {
        arrays.get(&key).ok_or_else(|| {
            let mut present: Vec<String> = arrays.keys().cloned().collect();
            present.sort_unstable();
            NotMedMnist::MissingArray { key, present }
        })
    };
    let images = get(format!("{split}_images"))?;
    let labels = get(format!("{split}_labels"))?;
    if images.kind() != Kind::Uint8 {
        return Err(NotMedMnist::ImagesNotUint8 {
            split,
            kind: images.kind(),
        });
    }
    let images = match images.size()[..] {
        [_, _, _] => images.unsqueeze(-1),
        [_, _, _, 1 | 3] => images.shallow_clone(),
        _ => {
            return Err(NotMedMnist::ImageShape {
                split,
                shape: images.size(),
            })
        }
    };
    let rows = images.size()[0];
    let integer = matches!(
        labels.kind(),
        Kind::Uint8 | Kind::Int8 | Kind::Int16 | Kind::Int | Kind::Int64
    );
    if !integer {
        return Err(NotMedMnist::LabelsNotIntegers {
            split,
            kind: labels.kind(),
        });
    }
    let shape = labels.size();
    if !(shape == [rows] || shape == [rows, 1]) {
        return Err(NotMedMnist::LabelShape { split, shape, rows });
    }
    if rows == 0 {
        return Err(NotMedMnist::EmptySplit(split));
    }
    Ok((images, labels.reshape([rows]).to_kind(Kind::Int64)))
}

/// The class count is taken from the data: labels must run 0..K-1 and every class
/// must occur in the train split, or a label is out of range.
fn check_labels(train: &Tensor, val: &Tensor, test: &Tensor) -> Result<i64, NotMedMnist> {
    let all = Tensor::cat(&[train, val, test], 0);
    let (min, max) = (all.min().int64_value(&[]), all.max().int64_value(&[]));
    if min < 0 {
        return Err(NotMedMnist::NegativeLabel(min));
    }
    let classes = max + 1;
    let counts = train.bincount::<Tensor>(None, classes);
    let missing: Vec<i64> = (0..classes)
        .filter(|&class| counts.int64_value(&[class]) == 0)
        .collect();
    if !missing.is_empty() {
        return Err(NotMedMnist::ClassesMissingFromTrain { max, missing });
    }
    Ok(classes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes an npz whose image pixels all equal the row index, labels cycling 0..classes.
    fn write_fixture(dir: &Path, rows: [i64; 3], classes: i64) -> PathBuf {
        let path = dir.join("fixture.npz");
        let mut arrays = Vec::new();
        for (split, n) in ["train", "val", "test"].iter().zip(rows) {
            let pixels = Tensor::arange(n, (Kind::Int64, Device::Cpu))
                .view([n, 1, 1, 1])
                .expand([n, 4, 5, 3], false)
                .to_kind(Kind::Uint8);
            let labels = Tensor::arange(n, (Kind::Int64, Device::Cpu))
                .remainder(classes)
                .view([n, 1])
                .to_kind(Kind::Uint8);
            arrays.push((format!("{split}_images"), pixels));
            arrays.push((format!("{split}_labels"), labels));
        }
        Tensor::write_npz(&arrays, &path).unwrap();
        path
    }

    #[test]
    fn holdout_takes_the_leading_share_of_train_and_scales_pixels() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_fixture(dir.path(), [10, 3, 4], 2);
        let data = load(&path, 0.7, Device::Cpu).unwrap();
        assert_eq!(
            (data.train.len(), data.val.len(), data.test.len()),
            (7, 3, 4)
        );
        assert_eq!(
            data.input,
            InputShape {
                channels: 3,
                height: 4,
                width: 5,
                classes: 2
            }
        );
        assert_eq!(data.train.images.size(), [7, 3, 4, 5]);
        let first_pixel = |split: &Split, row: i64| split.images.double_value(&[row, 0, 0, 0]);
        assert!((first_pixel(&data.train, 6) - 6.0 / 255.0).abs() < 1e-7);
        assert!((first_pixel(&data.val, 0) - 7.0 / 255.0).abs() < 1e-7);
        assert_eq!(data.val.labels.int64_value(&[0]), 1);
    }

    #[test]
    fn the_study_holdout_of_11959_rows_is_8371_and_3588() {
        assert_eq!((11959_f64 * 0.7).floor() as i64, 8371);
    }

    #[test]
    fn npy_headers_announce_their_data_size() {
        let header = "{'descr': '|u1', 'fortran_order': False, 'shape': (10, 28, 28, 3), }";
        assert_eq!(npy_data_bytes(header), Some(23_520));
        assert_eq!(npy_data_bytes("{'descr': '<f8', 'shape': (), }"), Some(8));
        assert_eq!(
            npy_data_bytes("{'descr': '<i8', 'shape': (4,), }"),
            Some(32)
        );
        assert_eq!(
            npy_data_bytes("{'descr': '<u1', 'shape': (99999999999, 99999999999, 9999), }"),
            None
        );
    }

    #[test]
    fn an_array_shorter_than_its_header_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("short.npz");
        let file = std::fs::File::create(&path).unwrap();
        let mut zip = zip::ZipWriter::new(file);
        zip.start_file("train_images.npy", zip::write::FileOptions::default())
            .unwrap();
        let header = "{'descr': '|u1', 'fortran_order': False, 'shape': (1000, 28, 28, 3), }\n";
        std::io::Write::write_all(&mut zip, b"\x93NUMPY\x01\x00").unwrap();
        std::io::Write::write_all(&mut zip, &(header.len() as u16).to_le_bytes()).unwrap();
        std::io::Write::write_all(&mut zip, header.as_bytes()).unwrap();
        std::io::Write::write_all(&mut zip, &[7u8; 100]).unwrap();
        zip.finish().unwrap();
        assert!(matches!(
            check_npz_sizes(&path),
            Err(DamagedNpz::WrongDataSize {
                expected: 2_352_000,
                stored: Some(100),
                ..
            })
        ));
        let error = load(&path, 0.7, Device::Cpu).unwrap_err().to_string();
        assert!(
            error.contains("should hold 2352000 bytes") && error.contains("holds 100"),
            "{error}"
        );
    }

    #[test]
    fn a_class_missing_from_train_is_a_label_out_of_range() {
        let train = Tensor::from_slice(&[0i64, 1, 0, 1]);
        let test = Tensor::from_slice(&[0i64, 9]);
        assert_eq!(
            check_labels(&train, &test, &test),
            Err(NotMedMnist::ClassesMissingFromTrain {
                max: 9,
                missing: (2..=9).collect()
            })
        );
        let negative = Tensor::from_slice(&[-1i64, 0]);
        assert_eq!(
            check_labels(&train, &negative, &test),
            Err(NotMedMnist::NegativeLabel(-1))
        );
        assert_eq!(check_labels(&train, &train, &train), Ok(2));
    }

    #[test]
    fn a_missing_or_misshapen_array_is_told_apart() {
        let images = Tensor::zeros([4, 2, 2, 3], (Kind::Uint8, Device::Cpu));
        let labels = Tensor::zeros([4, 1], (Kind::Uint8, Device::Cpu));
        let mut arrays = HashMap::from([("train_images".to_string(), images)]);
        assert!(matches!(
            read_split(&arrays, "train"),
            Err(NotMedMnist::MissingArray { key, .. }) if key == "train_labels"
        ));
        arrays.insert("train_labels".into(), labels.view([2, 2]));
        assert_eq!(
            read_split(&arrays, "train").unwrap_err(),
            NotMedMnist::LabelShape {
                split: "train",
                shape: vec![2, 2],
                rows: 4
            }
        );
        arrays.insert("train_labels".into(), labels);
        assert_eq!(read_split(&arrays, "train").unwrap().0.size(), [4, 2, 2, 3]);
    }
}
