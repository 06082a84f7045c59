//! A data set from a folder of images (`dataset: {folder}`): class folders read into a
//! cached npz file in the official layout. One subfolder per class (the ImageFolder
//! convention), optionally under `train/`, `val/` and `test/`. It is decoded and
//! resized once (see `images`) into an npz file in the official MedMNIST layout, cached
//! where the user may write (`cache::cache_dir`: never a data folder that is shared
//! read-only) under a name holding a hash of the folder's contents, so every other part
//! of cellnets reads it as it reads a MedMNIST file, and a changed folder is read again.

use crate::data::cache::cache_dir;
use crate::data::images;
use crate::data::npz::{self, Arrays};
use crate::random::SplitMix64;
use crate::storage::files::write_atomically;
use crate::study::manifest::{DatasetSpec, FolderSplit};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Bumped when the cache's contents change for the same folder, so old caches are not read.
const CACHE_FORMAT: &str = "cellnets image folder 1";

/// Display names of a data set's classes: a folder's subfolder names when they are as
/// many as the model's classes, else the study's names for its dataset, else numbers.
pub fn class_names(spec: &DatasetSpec, classes: usize) -> Vec<String> {
    let from_folder = spec.folder.as_deref().and_then(|folder| {
        let layout = class_folders(&root_of_classes(folder)).ok()?;
        (layout.len() == classes).then_some(layout)
    });
    from_folder.unwrap_or_else(|| crate::study::reference::class_names(&spec.name, classes))
}

/// The folder's npz file, built from its images into the cache folder when no cache of
/// its current contents exists there or in the data folder (where cellnets wrote them
/// before, and where a shared copy may be put).
pub fn cached_npz(data_dir: &Path, spec: &DatasetSpec) -> Result<PathBuf> {
    let folder = spec.folder.as_deref().context("not a folder data set")?;
    let sources = scan(folder, spec)?;
    let key = content_key(&sources, spec)?;
    let name = format!("{}_{}-{}.npz", spec.name, spec.image_size, &key[..16]);
    let cache_dir = cache_dir(data_dir);
    let path = cache_dir.join(&name);
    for found in [data_dir.join(&name), path.clone()] {
        if found.is_file() {
            return Ok(found);
        }
    }
    crate::notes::say(&format!(
        "reading {} images of {} into {}",
        sources.files.len(),
        folder.display(),
        path.display()
    ));
    let arrays = build_arrays(&sources, spec)?;
    std::fs::create_dir_all(&cache_dir).with_context(|| {
        format!(
            "cannot create the cache folder {}: make it writable or point \
             CELLNETS_CACHE_DIR at a folder you can write",
            cache_dir.display()
        )
    })?;
    write_atomically(&path, |tmp| npz::write(tmp, &arrays))?;
    Ok(path)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SplitName {
    Train,
    Val,
    Test,
}

struct Source {
    path: PathBuf,
    class: usize,
    /// The split its subfolder puts it in; `None` when the folder has no split subfolders.
    split: Option<SplitName>,
}

struct Sources {
    classes: Vec<String>,
    files: Vec<Source>,
    /// Whether the folder has `train/` and `test/` (and maybe `val/`) subfolders.
    has_splits: bool,
}

/// The folder holding the class subfolders, or their `train/` folder.
fn root_of_classes(folder: &Path) -> PathBuf {
    let train = folder.join("train");
    if train.is_dir() {
        train
    } else {
        folder.to_path_buf()
    }
}

/// The subfolders of `dir` in sorted order (hidden ones skipped): the class names.
fn class_folders(dir: &Path) -> Result<Vec<String>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_dir() && !name.starts_with('.') {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Every image file of the folder with its class and split, in sorted order.
fn scan(folder: &Path, spec: &DatasetSpec) -> Result<Sources> {
    if !folder.is_dir() {
        bail!(
            "dataset folder {} is not a folder: give a folder with one subfolder of images per class",
            folder.display()
        );
    }
    let has_splits = folder.join("train").is_dir();
    if has_splits && !folder.join("test").is_dir() {
        bail!(
            "{} has train/ but no test/: give both (and optionally val/), each with one \
             subfolder per class, or put the class folders directly in {}",
            folder.display(),
            folder.display()
        );
    }
    if has_splits && spec.split.is_some() {
        bail!(
            "{} has train/ and test/ subfolders, so the dataset's `split` does not apply: \
             remove it",
            folder.display()
        );
    }
    let classes = class_folders(&root_of_classes(folder))?;
    if classes.len() < 2 {
        bail!(
            "{} has {} class subfolder(s): a classifier needs at least two, one folder of \
             images per class",
            root_of_classes(folder).display(),
            classes.len()
        );
    }
    let mut files = Vec::new();
    let splits: &[(Option<SplitName>, &str)] = if has_splits {
        &[
            (Some(SplitName::Train), "train"),
            (Some(SplitName::Val), "val"),
            (Some(SplitName::Test), "test"),
        ]
    } else {
        &[(None, "")]
    };
    for &(split, sub) in splits {
        let dir = folder.join(sub);
        if !dir.is_dir() {
            continue;
        }
        for name in class_folders(&dir)? {
            let Some(class) = classes.iter().position(|known| *known == name) else {
                bail!(
                    "{} is not a class of train/ (whose classes are {}): every split needs \
                     the same class folders",
                    dir.join(&name).display(),
                    classes.join(", ")
                );
            };
            let mut paths = Vec::new();
            images::find_in(&dir.join(&name), &mut paths)?;
            if paths.is_empty() && split != Some(SplitName::Val) {
                bail!(
                    "{} holds no image files (endings {})",
                    dir.join(&name).display(),
                    images::EXTENSIONS.join(", ")
                );
            }
            files.extend(paths.into_iter().map(|path| Source { path, class, split }));
        }
    }
    Ok(Sources {
        classes,
        files,
        has_splits,
    })
}

/// MD5 of everything the cache depends on: each file's place, class, split and bytes,
/// the image size and the split settings.
fn content_key(sources: &Sources, spec: &DatasetSpec) -> Result<String> {
    let mut md5 = md5::Context::new();
    let split = spec.split.unwrap_or_default();
    md5.consume(format!(
        "{CACHE_FORMAT}\n{}\n{} {} {}\n",
        spec.image_size, split.val, split.test, split.seed
    ));
    for source in &sources.files {
        let bytes = std::fs::read(&source.path)
            .with_context(|| format!("cannot read {}", source.path.display()))?;
        md5.consume(format!(
            "{}\0{}\0{:?}\0{}\0",
            source.path.display(),
            sources.classes[source.class],
            source.split,
            bytes.len()
        ));
        md5.consume(&bytes);
    }
    Ok(format!("{:x}", md5.compute()))
}

/// The official layout's arrays: (name, npy descr, shape, bytes).
fn build_arrays(sources: &Sources, spec: &DatasetSpec) -> Result<Arrays> {
    let side = spec.image_size;
    let mut prepared = Vec::with_capacity(sources.files.len());
    let mut failures = Vec::new();
    for source in &sources.files {
        match images::read(&source.path, side, side) {
            Ok(image) => prepared.push(image),
            Err(error) => failures.push(format!("{}: {error:#}", source.path.display())),
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} of the data set's image files cannot be read; fix or remove them:\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
    }
    // Grey files stay one channel, as MedMNIST's grey data sets are (N, H, W).
    let channels = if prepared.iter().all(|image| image.grey) {
        1
    } else {
        3
    };
    let rows = assign_splits(sources, spec.split.unwrap_or_default())?;
    let mut arrays = Vec::new();
    for (name, indices) in ["train", "val", "test"].iter().zip(rows) {
        let mut pixels = Vec::new();
        for &index in &indices {
            pixels.extend(prepared[index].bytes(channels));
        }
        let side = side as usize;
        let mut shape = vec![indices.len(), side, side];
        if channels == 3 {
            shape.push(3);
        }
        arrays.push((format!("{name}_images"), "|u1", shape, pixels));
        let labels: Vec<i64> = indices
            .iter()
            .map(|&i| sources.files[i].class as i64)
            .collect();
        arrays.push(label_array(name, &labels, sources.classes.len()));
    }
    Ok(arrays)
}

fn label_array(
    split: &str,
    labels: &[i64],
    classes: usize,
) -> (String, &'static str, Vec<usize>, Vec<u8>) {
    let name = format!("{split}_labels");
    let shape = vec![labels.len(), 1];
    if classes <= 256 {
        (
            name,
            "|u1",
            shape,
            labels.iter().map(|&l| l as u8).collect(),
        )
    } else {
        let bytes = labels.iter().flat_map(|l| l.to_le_bytes()).collect();
        (name, "<i8", shape, bytes)
    }
}

/// Row indices of the train, val and test splits, each in a seeded random order: cellnets
/// validates on the trailing share of the train split, which must not be one class.
fn assign_splits(sources: &Sources, split: FolderSplit) -> Result<[Vec<usize>; 3]> {
    let mut random = SplitMix64(split.seed);
    let mut rows: [Vec<usize>; 3] = Default::default();
    for class in 0..sources.classes.len() {
        let of = |wanted: Option<SplitName>| -> Vec<usize> {
            (0..sources.files.len())
                .filter(|&i| sources.files[i].class == class && sources.files[i].split == wanted)
                .collect()
        };
        let (mut pool, val_share, test_share) = if sources.has_splits {
            rows[1].extend(of(Some(SplitName::Val)));
            rows[2].extend(of(Some(SplitName::Test)));
            let no_val_folder = sources
                .files
                .iter()
                .all(|f| f.split != Some(SplitName::Val));
            let val_share = if no_val_folder { split.val } else { 0.0 };
            (of(Some(SplitName::Train)), val_share, 0.0)
        } else {
            (of(None), split.val, split.test)
        };
        random.shuffle(&mut pool);
        let count = |share: f64| (pool.len() as f64 * share).round() as usize;
        let (val, test) = (count(val_share), count(test_share));
        if val + test >= pool.len() {
            bail!(
                "class `{}` has {} training image(s): too few to give shares to val and test and \
                 keep one to train on; add images or lower the dataset's `split`",
                sources.classes[class],
                pool.len()
            );
        }
        rows[2].extend(pool.drain(..test));
        rows[1].extend(pool.drain(..val));
        rows[0].extend(pool);
    }
    for (rows, name) in rows.iter_mut().zip(["train", "val", "test"]) {
        if rows.is_empty() {
            bail!(
                "the {name} split of the folder data set is empty: add images, or raise the \
                 dataset's `split` share for it"
            );
        }
        random.shuffle(rows);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shuffle_is_a_seeded_permutation() {
        let shuffled = |seed| {
            let mut items: Vec<usize> = (0..50).collect();
            SplitMix64(seed).shuffle(&mut items);
            items
        };
        assert_eq!(shuffled(3), shuffled(3));
        assert_ne!(shuffled(3), shuffled(4));
        let mut sorted = shuffled(3);
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    }
}
