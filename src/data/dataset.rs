//! Finding, checking and loading MedMNIST npz files for training, with the study's
//! holdout or the official val split; `Datasets`, each file opened once. The holdout
//! trains on the leading share of the official train split and validates on the rest;
//! the official test split tests.

use super::cache;
use super::pixels::{self, Images};
use crate::data::download;
use crate::data::npz::{self, Array, Npz};
use crate::models::InputShape;
use crate::study::catalog::MedMnistSet;
use crate::study::manifest::{DatasetSpec, Validation};
use crate::study::task::Task;
use anyhow::{anyhow, bail, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use tch::{Device, Kind, Tensor};

/// A split's images and labels, on one device. Labels are class indices (int64, N) or,
/// for a multi-label task, 0/1 per label (float, N x labels).
#[derive(Debug)]
pub struct Split {
    pub images: Images,
    pub labels: Tensor,
    pub task: Task,
}

impl Split {
    /// Another handle on the same tensors, for another thread.
    pub fn shallow_clone(&self) -> Split {
        Split {
            images: self.images.shallow_clone(),
            labels: self.labels.shallow_clone(),
            task: self.task,
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
    pub task: Task,
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
            task: self.task,
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
    load(&path, spec, dir, device)
}

/// `spec`'s npz file in `dir`: a folder data set's cache (built when missing), else the
/// MedMNIST file (downloaded when missing).
pub fn locate(dir: &Path, spec: &DatasetSpec) -> Result<PathBuf> {
    if spec.folder.is_some() {
        return crate::data::image_folder::cached_npz(dir, spec);
    }
    let path = dir.join(spec.file_name());
    download::ensure_present(&path)?;
    Ok(path)
}

/// The shape and task of `spec`'s data (downloading it when missing), without reading
/// its images.
pub fn probe(dir: &Path, spec: &DatasetSpec) -> Result<(InputShape, Task)> {
    let path = locate(dir, spec)?;
    let npz = open_npz(&path)?;
    let file = checked_layout(&npz, spec).map_err(|problem| not_medmnist(&path, problem))?;
    Ok((file.input, file.task))
}

/// Reads and checks an npz file by structure (arrays, types, shapes, labels), so any
/// faithful copy loads, and splits it as `spec` says. Images stay uint8: on `device`
/// when they fit in the memory budget (`set_memory_budget`), else in an uncompressed
/// copy (see `cache::cache_dir` for where, given the data folder `data_dir`), read per
/// batch.
pub fn load(path: &Path, spec: &DatasetSpec, data_dir: &Path, device: Device) -> Result<Dataset> {
    let npz = open_npz(path)?;
    let bad = |problem| not_medmnist(path, problem);
    let file = checked_layout(&npz, spec).map_err(bad)?;
    note_image_size(path, spec, file.row_shape);
    let md5 = download::file_md5(path)?;
    let pixel_bytes: u64 = file
        .splits
        .iter()
        .map(|(images, _)| images.data_bytes())
        .sum();
    let budget = memory_budget();
    let on_disk = pixel_bytes > budget;
    if on_disk {
        crate::precision::allocator::return_freed_memory();
        crate::notes::say(&format!(
            "{}: its {} MB of pixels exceed the data memory budget of {} MB \
             (--data-memory); reading them from disk per batch",
            path.display(),
            pixel_bytes >> 20,
            budget >> 20
        ));
    }
    let [height, width, channels] = file.row_shape;
    let cache_dir = on_disk.then(|| cache::cache_dir(data_dir));
    let mut splits = Vec::new();
    for ((images, _), labels) in file.splits.iter().zip(&file.labels) {
        let images = if let Some(cache_dir) = &cache_dir {
            let copy = cache::uncompressed(&npz, images, &md5, cache_dir)?;
            let rows = pixels::DiskRows::open(copy.clone(), images.rows(), file.row_shape, device)
                .map_err(|error| {
                    anyhow!(
                        "the image cache {} is unusable ({error}): delete it so that it is \
                         written again",
                        copy.display()
                    )
                })?;
            Images::OnDisk(rows)
        } else {
            let pixels = npz.read(images).map_err(|damage| damaged(path, damage))?;
            let pixels = pixels.view([images.rows(), height, width, channels]);
            Images::Pixels(pixels.to_device(device))
        };
        let labels = match file.task {
            Task::MultiLabel => labels.to_kind(Kind::Float),
            _ => labels.reshape([-1]),
        };
        splits.push(Split {
            images,
            labels: labels.to_device(device),
            task: file.task,
        });
    }
    let [train, val, test] = <[Split; 3]>::try_from(splits).expect("three splits");
    let (train, val) = match spec.validation {
        Validation::Official => (train, val),
        Validation::Holdout => holdout(path, train, spec.train_fraction)?,
    };
    Ok(Dataset {
        path: path.to_path_buf(),
        md5,
        train,
        val,
        test,
        input: file.input,
        task: file.task,
    })
}

/// The study's holdout: the leading share of the official train split trains, the
/// rest validates.
fn holdout(path: &Path, train: Split, train_fraction: f64) -> Result<(Split, Split)> {
    let rows = train.len();
    let train_rows = (rows as f64 * train_fraction).floor() as i64;
    if train_rows < 1 || train_rows >= rows {
        bail!(
            "{}: a train_fraction of {train_fraction} leaves no rows to {} among its {rows} train rows",
            path.display(),
            if train_rows < 1 { "train on" } else { "validate on" }
        );
    }
    let part = |start: i64, len: i64| Split {
        images: train.images.rows(start, len),
        labels: train.labels.narrow(0, start, len),
        task: train.task,
    };
    Ok((part(0, train_rows), part(train_rows, rows - train_rows)))
}

fn open_npz(path: &Path) -> Result<Npz> {
    // Not "damaged": a path given by hand (`eval --data`) may simply be wrong.
    if !path.is_file() {
        bail!(
            "{} does not exist (or is not a file): check the path, or give the folder that \
             holds it with --data-dir",
            path.display()
        );
    }
    Npz::open(path).map_err(|damage| damaged(path, damage))
}

/// A MedMNIST set's official file of `image_size` holds images of that size; another
/// (a rebuild, a synthetic stand-in) may not, and trains all the same: said, as the
/// split sizes are. A saved run refuses images of a shape it did not train on.
fn note_image_size(path: &Path, spec: &DatasetSpec, [height, width, _]: [i64; 3]) {
    let size = i64::from(spec.image_size);
    if spec.collection_set().is_some() && (height, width) != (size, size) {
        crate::notes::say(&format!(
            "note: {} holds {height}x{width} images, where the official file of image_size \
             {size} holds {size}x{size} ones",
            path.display()
        ));
    }
}

fn damaged(path: &Path, damage: npz::DamagedNpz) -> anyhow::Error {
    anyhow!(
        "{} is damaged: {damage}. Delete it so that it is downloaded again, or replace it \
         with the official file",
        path.display()
    )
}

fn not_medmnist(path: &Path, problem: NotMedMnist) -> anyhow::Error {
    anyhow!(
        "{} is not a usable MedMNIST file: {problem}. Replace it with the official file \
         (see docs/data.md)",
        path.display()
    )
}

/// Bytes of pixels a data set may keep in memory; 0 means unset.
static MEMORY_BUDGET: AtomicU64 = AtomicU64::new(0);

/// Sets how many bytes of uint8 pixels a data set may keep in memory (`--data-memory`);
/// a larger set is read from disk per batch.
pub fn set_memory_budget(bytes: u64) {
    MEMORY_BUDGET.store(bytes, Ordering::Relaxed);
}

/// The budget set, else `CELLNETS_DATA_MEMORY`, else half the memory available now.
pub fn memory_budget() -> u64 {
    match MEMORY_BUDGET.load(Ordering::Relaxed) {
        0 => std::env::var("CELLNETS_DATA_MEMORY")
            .ok()
            .and_then(|text| parse_bytes(&text).ok())
            .unwrap_or_else(|| available_memory().map_or(u64::MAX, |bytes| bytes / 2)),
        bytes => bytes,
    }
}

/// `MemAvailable` of /proc/meminfo, in bytes.
fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info
        .lines()
        .find(|line| line.starts_with("MemAvailable:"))?;
    let kilobytes: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kilobytes * 1024)
}

/// A size such as `512M`, `2G`, `1.5G` or `1000000` (bytes).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, ""),
    };
    let scale: u64 = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches(['B', 'I'])
    {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => {
            return Err(format!(
                "`{text}`: the unit must be K, M, G or T (e.g. 512M, 2G)"
            ))
        }
    };
    let number: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a size such as 512M or 2G"))?;
    if number.is_nan() || number <= 0.0 {
        return Err(format!("`{text}`: a memory budget must be positive"));
    }
    Ok((number * scale as f64) as u64)
}

/// What a file holds, once every check passed: per split its image and label arrays,
/// and its labels read as int64 (N, labels).
struct Layout<'a> {
    splits: [(&'a Array, &'a Array); 3],
    labels: [Tensor; 3],
    /// (H, W, C) of one image.
    row_shape: [i64; 3],
    input: InputShape,
    task: Task,
}

const SPLITS: [&str; 3] = ["train", "val", "test"];

/// Checks a file's arrays and labels, reading no image.
fn checked_layout<'a>(npz: &'a Npz, spec: &DatasetSpec) -> Result<Layout<'a>, NotMedMnist> {
    let mut splits = Vec::new();
    for split in SPLITS {
        splits.push(split_arrays(npz, split)?);
    }
    let splits: [(&Array, &Array); 3] = splits.try_into().expect("three splits");
    let row_shape = image_row_shape(splits[0].0, "train")?;
    for (split, (images, _)) in SPLITS.iter().zip(&splits).skip(1) {
        if image_row_shape(images, split)? != row_shape {
            return Err(NotMedMnist::ShapesDiffer {
                train: splits[0].0.shape.clone(),
                other: images.shape.clone(),
            });
        }
    }
    let mut labels = Vec::new();
    for (_, array) in &splits {
        let tensor = npz.read(array).map_err(|damage| NotMedMnist::Unreadable {
            array: array.name.clone(),
            problem: damage.to_string(),
        })?;
        labels.push(tensor.to_kind(Kind::Int64).view([array.rows(), -1]));
    }
    let labels: [Tensor; 3] = labels.try_into().expect("three splits");
    let columns = labels[0].size()[1];
    if labels.iter().any(|split| split.size()[1] != columns) {
        return Err(NotMedMnist::LabelColumnsDiffer);
    }
    let known = spec.collection_set();
    let task = spec
        .task
        .or(known.map(|set| set.task))
        .unwrap_or(if columns > 1 {
            Task::MultiLabel
        } else {
            Task::MultiClass
        });
    let outputs = check_labels(task, &labels)?;
    let task = match (spec.task, known, outputs) {
        (None, None, 2) if task == Task::MultiClass => Task::BinaryClass,
        _ => task,
    };
    let [height, width, channels] = row_shape;
    if let Some(set) = known {
        check_against_catalog(&spec.name, set, task, [channels, outputs], &splits)?;
    }
    Ok(Layout {
        splits,
        labels,
        row_shape,
        input: InputShape {
            channels,
            height,
            width,
            classes: outputs,
        },
        task,
    })
}

/// A collection set's file must have its channels and classes; other split sizes than
/// the official ones are only noted (a rebuild or a subset still trains).
fn check_against_catalog(
    name: &str,
    set: &MedMnistSet,
    task: Task,
    [channels, outputs]: [i64; 2],
    splits: &[(&Array, &Array); 3],
) -> Result<(), NotMedMnist> {
    let expected = set.labels.len() as i64;
    // A class file may lack the last classes (a subset); labels must all be there.
    let fits = if task.has_classes() {
        outputs <= expected
    } else {
        outputs == expected
    };
    if channels != set.channels || !fits {
        return Err(NotMedMnist::NotTheSet {
            name: name.to_string(),
            found: format!("{channels} channel(s) and {outputs} outputs"),
            official: format!("{} channel(s) and {expected} outputs", set.channels),
        });
    }
    let rows = splits.map(|(images, _)| images.rows());
    let official = [set.samples.train, set.samples.val, set.samples.test];
    if rows != official {
        crate::notes::say(&format!(
            "note: this {name} file's splits hold {rows:?} images, the official ones \
             {official:?} (train, val, test): results are not comparable image for image \
             with published ones"
        ));
    }
    Ok(())
}

/// Why a readable npz file is not a usable MedMNIST file: replacing it with the
/// official file is the fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NotMedMnist {
    #[error("it has no `{key}` array (it has: {})", .present.join(", "))]
    MissingArray { key: String, present: Vec<String> },
    #[error("`{array}` cannot be read ({problem})")]
    Unreadable { array: String, problem: String },
    #[error("`{split}_images` holds {kind:?}, expected uint8")]
    ImagesNotUint8 { split: &'static str, kind: Kind },
    #[error(
        "`{split}_images` has shape {shape:?}, expected (N, H, W, 3), (N, H, W, 1) or (N, H, W)"
    )]
    ImageShape {
        split: &'static str,
        shape: Vec<i64>,
    },
    #[error("`{split}_labels` holds {kind:?}, expected integers")]
    LabelsNotIntegers { split: &'static str, kind: Kind },
    #[error(
        "`{split}_labels` has shape {shape:?}, expected ({rows}, 1) (one class per image) or \
         ({rows}, L) (L yes/no labels per image)"
    )]
    LabelShape {
        split: &'static str,
        shape: Vec<i64>,
        rows: i64,
    },
    #[error("the splits' labels have different numbers of columns")]
    LabelColumnsDiffer,
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
    #[error(
        "its labels have {columns} columns, but a {task} task takes one class per image \
         (set the dataset's `task: multi-label` if each column is a yes/no label)"
    )]
    ColumnsForClasses { task: Task, columns: i64 },
    #[error("a multi-label file holds only 0 and 1 as labels, this one holds {0}")]
    LabelNotBinary(i64),
    #[error(
        "a binary-class task takes two classes, this file has {0} (set the dataset's \
         `task: multi-class`)"
    )]
    NotTwoClasses(i64),
    #[error("as {name} it should have {official}, but it has {found}")]
    NotTheSet {
        name: String,
        found: String,
        official: String,
    },
}

/// The first ten classes, then `...`.
fn list_classes(classes: &[i64]) -> String {
    let shown: Vec<String> = classes.iter().take(10).map(i64::to_string).collect();
    let more = if classes.len() > 10 { ", ..." } else { "" };
    format!("{}{more}", shown.join(", "))
}

/// A split's image and label arrays, checked by type and shape.
fn split_arrays<'a>(
    npz: &'a Npz,
    split: &'static str,
) -> Result<(&'a Array, &'a Array), NotMedMnist> {
    let get = |key: String| {
        npz.get(&key).ok_or_else(|| NotMedMnist::MissingArray {
            key,
            present: npz.names(),
        })
    };
    let images = get(format!("{split}_images"))?;
    let labels = get(format!("{split}_labels"))?;
    if images.kind != Kind::Uint8 {
        return Err(NotMedMnist::ImagesNotUint8 {
            split,
            kind: images.kind,
        });
    }
    image_row_shape(images, split)?;
    let rows = images.rows();
    let integer = matches!(
        labels.kind,
        Kind::Uint8 | Kind::Int8 | Kind::Int16 | Kind::Int | Kind::Int64
    );
    if !integer {
        return Err(NotMedMnist::LabelsNotIntegers {
            split,
            kind: labels.kind,
        });
    }
    let shape = labels.shape.clone();
    if !(shape == [rows] || (shape.len() == 2 && shape[0] == rows && shape[1] >= 1)) {
        return Err(NotMedMnist::LabelShape { split, shape, rows });
    }
    if rows == 0 {
        return Err(NotMedMnist::EmptySplit(split));
    }
    Ok((images, labels))
}

/// (H, W, C) of a split's images; grey sets come without a channel axis.
fn image_row_shape(images: &Array, split: &'static str) -> Result<[i64; 3], NotMedMnist> {
    match images.shape[..] {
        [_, height, width] => Ok([height, width, 1]),
        [_, height, width, channels @ (1 | 3)] => Ok([height, width, channels]),
        _ => Err(NotMedMnist::ImageShape {
            split,
            shape: images.shape.clone(),
        }),
    }
}

/// Checks the labels (int64, N x columns) for `task`; returns the model's outputs: the
/// class count, taken from the data (labels must run 0..K-1 and every class must occur
/// in the train split, or a label is out of range), or the label count.
fn check_labels(task: Task, labels: &[Tensor; 3]) -> Result<i64, NotMedMnist> {
    let all = Tensor::cat(labels, 0);
    let (min, max) = (all.min().int64_value(&[]), all.max().int64_value(&[]));
    let columns = all.size()[1];
    if task == Task::MultiLabel {
        if min < 0 || max > 1 {
            return Err(NotMedMnist::LabelNotBinary(if min < 0 { min } else { max }));
        }
        return Ok(columns);
    }
    if columns != 1 {
        return Err(NotMedMnist::ColumnsForClasses { task, columns });
    }
    if min < 0 {
        return Err(NotMedMnist::NegativeLabel(min));
    }
    let classes = max + 1;
    let counts = labels[0].reshape([-1]).bincount::<Tensor>(None, classes);
    let missing: Vec<i64> = (0..classes)
        .filter(|&class| counts.int64_value(&[class]) == 0)
        .collect();
    if !missing.is_empty() {
        return Err(NotMedMnist::ClassesMissingFromTrain { max, missing });
    }
    if task == Task::BinaryClass && classes != 2 {
        return Err(NotMedMnist::NotTwoClasses(classes));
    }
    Ok(classes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> DatasetSpec {
        let mut manifest = crate::study::manifest::parse(&format!(
            "dataset: {text}\nstages: [{{name: s, model: {{kind: mlp, hidden: 2}}}}]"
        ))
        .unwrap();
        std::mem::replace(
            &mut manifest.dataset,
            serde_yaml::from_str("name: x").unwrap(),
        )
    }

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

    fn first_pixel(split: &Split, row: i64) -> f64 {
        split.images.image(row).unwrap().double_value(&[0, 0, 0])
    }

    #[test]
    fn holdout_takes_the_leading_share_of_train_and_scales_pixels() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_fixture(dir.path(), [10, 3, 4], 3);
        let data = load(&path, &spec("{name: fixture}"), dir.path(), Device::Cpu).unwrap();
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
                classes: 3
            }
        );
        assert_eq!(
            (data.task, data.train.task),
            (Task::MultiClass, Task::MultiClass)
        );
        assert!(
            matches!(&data.train.images, Images::Pixels(pixels) if pixels.kind() == Kind::Uint8)
        );
        assert_eq!(data.train.images.image(0).unwrap().size(), [3, 4, 5]);
        assert!((first_pixel(&data.train, 6) - 6.0 / 255.0).abs() < 1e-7);
        assert!((first_pixel(&data.val, 0) - 7.0 / 255.0).abs() < 1e-7);
        assert_eq!(data.val.labels.int64_value(&[0]), 1);

        let official = spec("{name: fixture, validation: official}");
        let data = load(&path, &official, dir.path(), Device::Cpu).unwrap();
        assert_eq!((data.train.len(), data.val.len()), (10, 3));
        assert!((first_pixel(&data.val, 2) - 2.0 / 255.0).abs() < 1e-7);
    }

    #[test]
    fn two_classes_are_a_binary_task_and_label_columns_a_multi_label_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_fixture(dir.path(), [6, 2, 2], 2);
        let data = load(&path, &spec("{name: fixture}"), dir.path(), Device::Cpu).unwrap();
        assert_eq!(data.task, Task::BinaryClass);

        let path = dir.path().join("labels.npz");
        let mut arrays = Vec::new();
        for (split, n) in [("train", 4i64), ("val", 2), ("test", 2)] {
            let images = Tensor::zeros([n, 2, 2], (Kind::Uint8, Device::Cpu));
            let labels = Tensor::from_slice(&[1u8, 0, 1, 0, 1, 1, 0, 0, 1, 1, 1, 1])
                .narrow(0, 0, n * 3)
                .view([n, 3]);
            arrays.push((format!("{split}_images"), images));
            arrays.push((format!("{split}_labels"), labels));
        }
        Tensor::write_npz(&arrays, &path).unwrap();
        let data = load(&path, &spec("{name: labels}"), dir.path(), Device::Cpu).unwrap();
        assert_eq!(
            (data.task, data.input.classes, data.input.channels),
            (Task::MultiLabel, 3, 1)
        );
        assert_eq!(data.train.labels.size(), [2, 3]);
        assert_eq!(data.train.labels.kind(), Kind::Float);
        let error = load(
            &path,
            &spec("{name: labels, task: multi-class}"),
            dir.path(),
            Device::Cpu,
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("3 columns") && error.contains("task: multi-label"),
            "{error}"
        );
    }

    #[test]
    fn a_set_over_the_memory_budget_trains_from_an_uncompressed_copy() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_fixture(dir.path(), [10, 3, 4], 2);
        let resident = load(&path, &spec("{name: fixture}"), dir.path(), Device::Cpu).unwrap();
        assert!(!dir.path().join(".cellnets-cache").exists());
        set_memory_budget(1);
        let on_disk = load(&path, &spec("{name: fixture}"), dir.path(), Device::Cpu);
        set_memory_budget(0);
        let on_disk = on_disk.unwrap();
        assert!(matches!(on_disk.val.images, Images::OnDisk(_)));
        let cache = dir.path().join(".cellnets-cache");
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 3);
        for (a, b) in [
            (&resident.train, &on_disk.train),
            (&resident.val, &on_disk.val),
        ] {
            let all = Tensor::arange(a.len(), (Kind::Int64, Device::Cpu));
            assert!(a.images.select(&all).equal(&b.images.select(&all)));
        }
    }

    #[test]
    fn the_study_holdout_of_11959_rows_is_8371_and_3588() {
        assert_eq!((11959_f64 * 0.7).floor() as i64, 8371);
    }

    #[test]
    fn sizes_read_with_their_units() {
        assert_eq!(parse_bytes("512M"), Ok(512 << 20));
        assert_eq!(parse_bytes("2G"), Ok(2 << 30));
        assert_eq!(parse_bytes("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert!(parse_bytes("2X").is_err());
        assert!(parse_bytes("-1G").is_err());
    }

    #[test]
    fn a_class_missing_from_train_is_a_label_out_of_range() {
        let column = |values: &[i64]| Tensor::from_slice(values).view([-1, 1]);
        let train = column(&[0, 1, 0, 1]);
        let test = column(&[0, 9]);
        let labels = [
            train.shallow_clone(),
            test.shallow_clone(),
            test.shallow_clone(),
        ];
        assert_eq!(
            check_labels(Task::MultiClass, &labels),
            Err(NotMedMnist::ClassesMissingFromTrain {
                max: 9,
                missing: (2..=9).collect()
            })
        );
        let negative = [
            train.shallow_clone(),
            column(&[-1, 0]),
            test.shallow_clone(),
        ];
        assert_eq!(
            check_labels(Task::MultiClass, &negative),
            Err(NotMedMnist::NegativeLabel(-1))
        );
        let fine = [
            train.shallow_clone(),
            train.shallow_clone(),
            train.shallow_clone(),
        ];
        assert_eq!(check_labels(Task::MultiClass, &fine), Ok(2));
        let twos = [column(&[0, 2]), column(&[1]), column(&[0])];
        assert_eq!(
            check_labels(Task::MultiLabel, &twos),
            Err(NotMedMnist::LabelNotBinary(2))
        );
        let three = [column(&[0, 1, 2]), column(&[1]), column(&[0])];
        assert_eq!(
            check_labels(Task::BinaryClass, &three),
            Err(NotMedMnist::NotTwoClasses(3))
        );
    }

    #[test]
    fn a_missing_or_misshapen_array_is_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.npz");
        let images = Tensor::zeros([4, 2, 2, 3], (Kind::Uint8, Device::Cpu));
        let labels = Tensor::zeros([4, 1], (Kind::Uint8, Device::Cpu));
        Tensor::write_npz(&[("train_images", &images)], &path).unwrap();
        let npz = Npz::open(&path).unwrap();
        assert!(matches!(
            split_arrays(&npz, "train"),
            Err(NotMedMnist::MissingArray { key, .. }) if key == "train_labels"
        ));
        let wrong = labels.view([2, 2]);
        Tensor::write_npz(
            &[("train_images", &images), ("train_labels", &wrong)],
            &path,
        )
        .unwrap();
        let npz = Npz::open(&path).unwrap();
        assert_eq!(
            split_arrays(&npz, "train").unwrap_err(),
            NotMedMnist::LabelShape {
                split: "train",
                shape: vec![2, 2],
                rows: 4
            }
        );
        Tensor::write_npz(
            &[("train_images", &images), ("train_labels", &labels)],
            &path,
        )
        .unwrap();
        let npz = Npz::open(&path).unwrap();
        assert_eq!(split_arrays(&npz, "train").unwrap().0.shape, [4, 2, 2, 3]);
    }
}
