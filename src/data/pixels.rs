//! A split's images where they are kept: uint8 pixels on the device, an uncompressed
//! cache on disk, or a frozen extractor's features; float per batch. The cache holds
//! sets larger than memory; the features are computed once. Whichever, a batch reaches
//! the model as float (N, C, H, W) in [0, 1], converted on the device per batch, so a
//! resident set takes a quarter of the memory it would take as floats.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use tch::{Device, Kind, Tensor};

/// Evaluation keeps no gradients, so its batches are large: up to this many images...
pub const EVAL_BATCH: i64 = 1024;
/// ...and this many bytes of float input, so that large images stay in bounds (at
/// 28 and 64 pixels the 1024 images come first).
const EVAL_BYTES: i64 = 64 << 20;

#[derive(Debug)]
pub enum Images {
    /// uint8 (N, H, W, C) as the file stores them, on the training device.
    Pixels(Tensor),
    /// uint8 rows of (H, W, C) in an uncompressed cache file, read per batch.
    OnDisk(DiskRows),
    /// Float features as the next layers take them, on the training device.
    Features(Tensor),
}

impl Images {
    /// Another handle on the same images, for another thread.
    pub fn shallow_clone(&self) -> Images {
        match self {
            Images::Pixels(pixels) => Images::Pixels(pixels.shallow_clone()),
            Images::OnDisk(rows) => Images::OnDisk(rows.clone()),
            Images::Features(features) => Images::Features(features.shallow_clone()),
        }
    }

    pub fn len(&self) -> i64 {
        match self {
            Images::Pixels(tensor) | Images::Features(tensor) => tensor.size()[0],
            Images::OnDisk(rows) => rows.rows,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The device batches are delivered on.
    pub fn device(&self) -> Device {
        match self {
            Images::Pixels(tensor) | Images::Features(tensor) => tensor.device(),
            Images::OnDisk(rows) => rows.device,
        }
    }

    /// Rows `start..start + len`, without copying.
    pub fn rows(&self, start: i64, len: i64) -> Images {
        match self {
            Images::Pixels(pixels) => Images::Pixels(pixels.narrow(0, start, len)),
            Images::Features(features) => Images::Features(features.narrow(0, start, len)),
            Images::OnDisk(rows) => Images::OnDisk(DiskRows {
                first: rows.first + start,
                rows: len,
                ..rows.clone()
            }),
        }
    }

    /// A training batch: the rows of `index` (int64, on the device), contiguous.
    pub fn select(&self, index: &Tensor) -> Tensor {
        match self {
            Images::Pixels(pixels) => training_batch(&pixels.index_select(0, index)),
            Images::Features(features) => features.index_select(0, index),
            Images::OnDisk(rows) => {
                // The CPU reads the rows from disk, so it needs their numbers.
                let index = Vec::<i64>::try_from(index.to_device(Device::Cpu))
                    .expect("row indices are int64");
                training_batch(&rows.read(&index).to_device(rows.device))
            }
        }
    }

    /// Consecutive evaluation batches, as the model takes them.
    pub fn batches(&self) -> impl Iterator<Item = Tensor> + '_ {
        let rows = self.len();
        let batch = self.eval_batch();
        (0..rows).step_by(batch as usize).map(move |start| {
            let len = batch.min(rows - start);
            match self {
                Images::Pixels(pixels) => evaluation_batch(&pixels.narrow(0, start, len)),
                Images::Features(features) => features.narrow(0, start, len),
                Images::OnDisk(rows) => {
                    let index: Vec<i64> = (start..start + len).collect();
                    evaluation_batch(&rows.read(&index).to_device(rows.device))
                }
            }
        })
    }

    /// Rows per evaluation batch: `EVAL_BATCH`, fewer for large rows.
    fn eval_batch(&self) -> i64 {
        let values_per_row = match self {
            Images::Pixels(tensor) | Images::Features(tensor) => {
                tensor.size()[1..].iter().product::<i64>()
            }
            Images::OnDisk(rows) => rows.shape.iter().product::<i64>(),
        };
        let float_bytes = values_per_row * 4;
        (EVAL_BYTES / float_bytes.max(1)).clamp(1, EVAL_BATCH)
    }

    /// Image `index` as float (C, H, W) on the CPU, for figures; None for features.
    pub fn image(&self, index: i64) -> Option<Tensor> {
        let one = Tensor::from_slice(&[index]).to_device(self.device());
        match self {
            Images::Features(_) => None,
            // Figures are drawn on the CPU.
            _ => Some(self.select(&one).get(0).to_device(Device::Cpu)),
        }
    }
}

/// uint8 (N, H, W, C) pixels as the float (N, C, H, W) in [0, 1] models take, laid out
/// as training batches always were: contiguous, as `index_select` made them from the
/// float split. The layout changes while the pixels are still bytes.
fn training_batch(pixels: &Tensor) -> Tensor {
    pixels
        .permute([0, 3, 1, 2])
        .contiguous()
        .to_kind(Kind::Float)
        / 255.0
}

/// The same for evaluation, laid out as evaluation batches always were: channel-last
/// views of the float split, which some kernels compute in another order.
fn evaluation_batch(pixels: &Tensor) -> Tensor {
    (pixels.to_kind(Kind::Float) / 255.0).permute([0, 3, 1, 2])
}

/// Rows of uint8 pixels in a file without any header: row i of the split is at byte
/// (first + i) * row_bytes.
#[derive(Debug, Clone)]
pub struct DiskRows {
    pub path: PathBuf,
    file: Arc<File>,
    first: i64,
    rows: i64,
    /// (H, W, C) of one row.
    shape: [i64; 3],
    device: Device,
}

impl DiskRows {
    pub fn open(
        path: PathBuf,
        rows: i64,
        shape: [i64; 3],
        device: Device,
    ) -> std::io::Result<Self> {
        let file = File::open(&path)?;
        let expected = rows as u64 * shape.iter().product::<i64>() as u64;
        let found = file.metadata()?.len();
        if found != expected {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("holds {found} bytes, expected {expected}"),
            ));
        }
        Ok(DiskRows {
            path,
            file: Arc::new(file),
            first: 0,
            rows,
            shape,
            device,
        })
    }

    fn row_bytes(&self) -> usize {
        self.shape.iter().product::<i64>() as usize
    }

    /// Rows `index` (relative to this split) as uint8 (N, H, W, C) on the CPU, in the
    /// order given.
    fn read(&self, index: &[i64]) -> Tensor {
        let row = self.row_bytes();
        let mut buffer = vec![0u8; row * index.len()];
        for (slot, &i) in buffer.chunks_exact_mut(row).zip(index) {
            let offset = (self.first + i) as u64 * row as u64;
            if let Err(error) = self.file.read_exact_at(slot, offset) {
                // A batch has no way to fail but a panic, which the run reports.
                panic!(
                    "cannot read the image cache {} ({error}): delete it so that it is \
                     written again from the npz file",
                    self.path.display()
                );
            }
        }
        let [height, width, channels] = self.shape;
        // Read into the CPU's memory; `select` and `batches` move it to the device.
        Tensor::from_slice(&buffer).view([index.len() as i64, height, width, channels])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pixels(rows: i64) -> Tensor {
        Tensor::randint(256, [rows, 4, 5, 3], (Kind::Int64, Device::Cpu)).to_kind(Kind::Uint8)
    }

    #[test]
    fn batches_and_selections_are_the_pixels_as_floats() {
        let u8s = pixels(2500);
        // The float split as cellnets kept it before it kept bytes.
        let floats = u8s.permute([0, 3, 1, 2]).to_kind(Kind::Float) / 255.0;
        let images = Images::Pixels(u8s.shallow_clone());
        let index = Tensor::from_slice(&[7i64, 2, 2400]);
        let batch = images.select(&index);
        let before = floats.index_select(0, &index);
        assert!(batch.equal(&before) && batch.stride() == before.stride());
        let batches: Vec<Tensor> = images.batches().collect();
        let first_before = floats.narrow(0, 0, EVAL_BATCH);
        assert_eq!(batches[0].stride(), first_before.stride());
        assert_eq!(batches.len(), 3);
        assert_eq!(batches[0].size()[0], EVAL_BATCH);
        assert!(Tensor::cat(&batches, 0).equal(&floats));
        let tail = images.rows(2000, 500);
        assert!(tail
            .select(&Tensor::from_slice(&[0i64]))
            .equal(&floats.narrow(0, 2000, 1)));
    }

    #[test]
    fn large_images_evaluate_in_smaller_batches() {
        let side = |pixels: i64| {
            let images = Tensor::zeros([2, pixels, pixels, 3], (Kind::Uint8, Device::Cpu));
            Images::Pixels(images).eval_batch()
        };
        assert_eq!((side(28), side(64)), (EVAL_BATCH, EVAL_BATCH));
        assert_eq!((side(128), side(224)), (341, 111));
    }

    #[test]
    fn rows_on_disk_read_as_the_pixels_they_hold() {
        let dir = tempfile::tempdir().unwrap();
        let u8s = pixels(1100);
        let path = dir.path().join("rows.u8");
        std::fs::write(&path, Vec::<u8>::try_from(u8s.flatten(0, -1)).unwrap()).unwrap();
        let on_disk = DiskRows::open(path.clone(), 1100, [4, 5, 3], Device::Cpu).unwrap();
        let (disk, memory) = (Images::OnDisk(on_disk), Images::Pixels(u8s));
        let index = Tensor::from_slice(&[1099i64, 0, 5, 5]);
        assert!(disk.select(&index).equal(&memory.select(&index)));
        let (disk_tail, memory_tail) = (disk.rows(100, 1000), memory.rows(100, 1000));
        for (a, b) in disk_tail.batches().zip(memory_tail.batches()) {
            assert!(a.equal(&b));
        }
        assert!(DiskRows::open(path, 1101, [4, 5, 3], Device::Cpu).is_err());
    }
}
