//! npz files (a zip of npy arrays) read array by array, headers first, and written.
//! Shapes and types are checked before any data is read; then each array's data goes
//! straight into a tensor, or is streamed to a file for sets larger than memory.

use anyhow::{Context, Result};
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

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
    #[error("`{name}` holds `{descr}`, a type cellnets does not read (big-endian or unknown)")]
    UnknownType { name: String, descr: String },
    #[error("`{0}` is stored in Fortran order; MedMNIST files are in C order")]
    FortranOrder(String),
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
    #[error("`{name}` broke off while being read ({error})")]
    BrokenData { name: String, error: std::io::Error },
    #[error("`{name}` claims {bytes} bytes, more than memory can hold ({error})")]
    TooLarge {
        name: String,
        bytes: u64,
        error: tch::TchError,
    },
}

/// One array of an npz file, as its header describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    /// Its name without `.npy`.
    pub name: String,
    pub kind: Kind,
    pub shape: Vec<i64>,
    /// Its entry in the zip archive, and where its data starts inside the entry.
    index: usize,
    data_start: u64,
}

impl Array {
    pub fn rows(&self) -> i64 {
        self.shape.first().copied().unwrap_or(1)
    }

    /// Bytes of data it holds.
    pub fn data_bytes(&self) -> u64 {
        self.shape.iter().map(|&dim| dim as u64).product::<u64>()
            * self.kind.elt_size_in_bytes() as u64
    }
}

/// An npz file whose every array's header was read and whose data sizes were checked.
#[derive(Debug)]
pub struct Npz {
    pub path: PathBuf,
    pub arrays: Vec<Array>,
}

impl Npz {
    /// Reads every array's header and checks that each holds as many bytes as its shape
    /// says (a truncated copy would otherwise be read past its end).
    pub fn open(path: &Path) -> Result<Npz, DamagedNpz> {
        let mut zip = archive(path)?;
        let mut arrays = Vec::new();
        for index in 0..zip.len() {
            let mut entry = zip
                .by_index(index)
                .map_err(|error| DamagedNpz::UnreadableEntry { index, error })?;
            let name = entry.name().trim_end_matches(".npy").to_string();
            let (kind, shape, data_start) = read_header(&mut entry, &name)?;
            let array = Array {
                name,
                kind,
                shape,
                index,
                data_start,
            };
            let stored = entry.size().checked_sub(data_start);
            let expected = array.data_bytes();
            if stored != Some(expected) {
                return Err(DamagedNpz::WrongDataSize {
                    name: array.name,
                    expected,
                    stored,
                });
            }
            arrays.push(array);
        }
        Ok(Npz {
            path: path.to_path_buf(),
            arrays,
        })
    }

    pub fn get(&self, name: &str) -> Option<&Array> {
        self.arrays.iter().find(|array| array.name == name)
    }

    /// The names of its arrays, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.arrays.iter().map(|a| a.name.clone()).collect();
        names.sort_unstable();
        names
    }

    /// An array's data as a CPU tensor of its type and shape, read straight into the
    /// tensor's memory.
    pub fn read(&self, array: &Array) -> Result<Tensor, DamagedNpz> {
        let tensor = Tensor::f_empty(array.shape.as_slice(), (array.kind, Device::Cpu)).map_err(
            |error| DamagedNpz::TooLarge {
                name: array.name.clone(),
                bytes: array.data_bytes(),
                error,
            },
        )?;
        let bytes = array.data_bytes() as usize;
        if bytes == 0 {
            return Ok(tensor);
        }
        // SAFETY: the tensor was just allocated, contiguous, on the CPU, with exactly
        // `bytes` bytes, and nothing else refers to it yet.
        let memory = unsafe { std::slice::from_raw_parts_mut(tensor.data_ptr() as *mut u8, bytes) };
        self.stream(array, |mut data| data.read_exact(memory))?;
        Ok(tensor)
    }

    /// Copies an array's data bytes into `out`, a buffer at a time.
    pub fn copy_data(&self, array: &Array, out: &mut impl Write) -> Result<(), DamagedNpz> {
        self.stream(array, |mut data| {
            let copied = std::io::copy(&mut data, out)?;
            if copied != array.data_bytes() {
                let short = format!("{copied} of {} bytes", array.data_bytes());
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    short,
                ));
            }
            Ok(())
        })
    }

    /// Opens an array's data, past its header, for `consume`.
    fn stream(
        &self,
        array: &Array,
        consume: impl FnOnce(std::io::Take<&mut dyn Read>) -> std::io::Result<()>,
    ) -> Result<(), DamagedNpz> {
        let broken = |error| DamagedNpz::BrokenData {
            name: array.name.clone(),
            error,
        };
        let mut zip = archive(&self.path)?;
        let mut entry = zip
            .by_index(array.index)
            .map_err(|error| DamagedNpz::UnreadableEntry {
                index: array.index,
                error,
            })?;
        std::io::copy(
            &mut (&mut entry).take(array.data_start),
            &mut std::io::sink(),
        )
        .map_err(broken)?;
        let reader: &mut dyn Read = &mut entry;
        consume(reader.take(array.data_bytes())).map_err(broken)
    }
}

fn archive(path: &Path) -> Result<zip::ZipArchive<BufReader<File>>, DamagedNpz> {
    let file = File::open(path).map_err(DamagedNpz::Unopenable)?;
    zip::ZipArchive::new(BufReader::new(file)).map_err(DamagedNpz::NotZip)
}

/// Reads an npy header: the array's type, shape and the offset of its data.
fn read_header(entry: &mut impl Read, name: &str) -> Result<(Kind, Vec<i64>, u64), DamagedNpz> {
    let mut preamble = [0u8; 12];
    entry
        .read_exact(&mut preamble)
        .map_err(|_| DamagedNpz::TooShort(name.to_string()))?;
    if &preamble[..6] != b"\x93NUMPY" {
        return Err(DamagedNpz::NotNpy(name.to_string()));
    }
    let (header_len, prefix) = match preamble[6] {
        1 => (u16::from_le_bytes([preamble[8], preamble[9]]) as u64, 10),
        _ => (
            u32::from_le_bytes([preamble[8], preamble[9], preamble[10], preamble[11]]) as u64,
            12,
        ),
    };
    if header_len > 1 << 16 {
        return Err(DamagedNpz::OversizedHeader(name.to_string()));
    }
    let mut rest = vec![0u8; (header_len as usize + prefix).saturating_sub(12)];
    entry
        .read_exact(&mut rest)
        .map_err(|_| DamagedNpz::TruncatedHeader(name.to_string()))?;
    let header = [&preamble[12.min(prefix)..], &rest[..]].concat();
    let header = String::from_utf8_lossy(&header);
    let unreadable = || DamagedNpz::UnreadableHeader(name.to_string());
    let descr = header_value(&header, "descr")
        .and_then(|value| value.split('\'').nth(1))
        .ok_or_else(unreadable)?;
    let kind = kind_of(descr).ok_or_else(|| DamagedNpz::UnknownType {
        name: name.to_string(),
        descr: descr.to_string(),
    })?;
    if header_value(&header, "fortran_order").is_some_and(|v| v.trim_start().starts_with("True")) {
        return Err(DamagedNpz::FortranOrder(name.to_string()));
    }
    let shape = header_value(&header, "shape")
        .and_then(parse_shape)
        .ok_or_else(unreadable)?;
    Ok((kind, shape, prefix as u64 + header_len))
}

/// The text after `'key':` in an npy header dictionary.
fn header_value<'h>(header: &'h str, key: &str) -> Option<&'h str> {
    header.split(&format!("'{key}':")).nth(1)
}

/// `(10, 28, 28, 3), ...` as dimensions, refusing any whose byte count overflows.
fn parse_shape(text: &str) -> Option<Vec<i64>> {
    let inside = text.split('(').nth(1)?.split(')').next()?;
    let shape: Vec<i64> = inside
        .split(',')
        .map(str::trim)
        .filter(|dim| !dim.is_empty())
        .map(|dim| dim.parse().ok().filter(|&dim: &i64| dim >= 0))
        .collect::<Option<_>>()?;
    shape
        .iter()
        .try_fold(8u64, |bytes, &dim| bytes.checked_mul(dim as u64))?;
    Some(shape)
}

/// libtorch's kind for a little-endian (or byte-sized) npy type.
fn kind_of(descr: &str) -> Option<Kind> {
    let code = match descr.as_bytes().first()? {
        b'<' | b'|' | b'=' => &descr[1..],
        b'>' => return None,
        _ => descr,
    };
    Some(match code {
        "u1" => Kind::Uint8,
        "i1" => Kind::Int8,
        "b1" => Kind::Bool,
        "i2" => Kind::Int16,
        "i4" => Kind::Int,
        "i8" => Kind::Int64,
        "f2" => Kind::Half,
        "f4" => Kind::Float,
        "f8" => Kind::Double,
        _ => return None,
    })
}

/// Arrays to write: (name, npy type such as `|u1`, shape, data bytes).
pub type Arrays = Vec<(String, &'static str, Vec<usize>, Vec<u8>)>;

/// Writes `arrays` as an uncompressed npz file.
pub fn write(path: &Path, arrays: &Arrays) -> Result<()> {
    let file = File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let options = zip::write::FileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .last_modified_time(zip::DateTime::default())
        .large_file(true);
    for (name, descr, shape, bytes) in arrays {
        zip.start_file(format!("{name}.npy"), options)?;
        zip.write_all(&npy_header(descr, shape))?;
        zip.write_all(bytes)?;
    }
    zip.finish()?.flush()?;
    Ok(())
}

/// An npy version 1.0 header, padded so the data starts on a 64-byte boundary.
fn npy_header(descr: &str, shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    let unpadded = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    dict.push('\n');
    let mut header = b"\x93NUMPY\x01\x00".to_vec();
    header.extend((dict.len() as u16).to_le_bytes());
    header.extend(dict.as_bytes());
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_headers_align_the_data_to_64_bytes() {
        let header = npy_header("|u1", &[3, 28, 28, 3]);
        assert_eq!(header.len() % 64, 0);
        assert!(String::from_utf8_lossy(&header).contains("'shape': (3, 28, 28, 3)"));
        assert!(String::from_utf8_lossy(&npy_header("<i8", &[5])).contains("(5,)"));
    }

    #[test]
    fn arrays_read_back_as_written_compressed_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let pixels: Vec<u8> = (0..60).map(|i| i as u8).collect();
        let labels: Vec<u8> = [3i64, -1].iter().flat_map(|v| v.to_le_bytes()).collect();
        let arrays: Arrays = vec![
            ("images".into(), "|u1", vec![5, 4, 3], pixels.clone()),
            ("labels".into(), "<i8", vec![2], labels),
        ];
        let stored = dir.path().join("stored.npz");
        write(&stored, &arrays).unwrap();
        // tch writes compressed (deflated) entries, as numpy's savez_compressed does.
        let deflated = dir.path().join("deflated.npz");
        let tensor = Tensor::from_slice(&pixels).view([5, 4, 3]);
        Tensor::write_npz(&[("images", &tensor)], &deflated).unwrap();
        for path in [&stored, &deflated] {
            let npz = Npz::open(path).unwrap();
            let images = npz.get("images").unwrap();
            assert_eq!(
                (images.kind, images.shape.clone()),
                (Kind::Uint8, vec![5, 4, 3])
            );
            assert!(npz.read(images).unwrap().equal(&tensor));
            let mut copied = Vec::new();
            npz.copy_data(images, &mut copied).unwrap();
            assert_eq!(copied, pixels);
        }
        let npz = Npz::open(&stored).unwrap();
        let labels = npz.read(npz.get("labels").unwrap()).unwrap();
        assert_eq!(Vec::<i64>::try_from(labels).unwrap(), [3, -1]);
    }

    #[test]
    fn shapes_and_types_are_read_from_headers() {
        assert_eq!(parse_shape("(10, 28, 28, 3), }"), Some(vec![10, 28, 28, 3]));
        assert_eq!(parse_shape("(4,), }"), Some(vec![4]));
        assert_eq!(parse_shape("(), }"), Some(vec![]));
        assert_eq!(parse_shape("(99999999999, 99999999999, 9999), }"), None);
        assert_eq!(kind_of("|u1"), Some(Kind::Uint8));
        assert_eq!(kind_of("<f8"), Some(Kind::Double));
        assert_eq!(kind_of(">i8"), None);
        assert_eq!(kind_of("<U8"), None);
    }

    #[test]
    fn an_array_shorter_than_its_header_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("short.npz");
        let file = File::create(&path).unwrap();
        let mut zip = zip::ZipWriter::new(file);
        zip.start_file("train_images.npy", zip::write::FileOptions::default())
            .unwrap();
        let header = "{'descr': '|u1', 'fortran_order': False, 'shape': (1000, 28, 28, 3), }\n";
        zip.write_all(b"\x93NUMPY\x01\x00").unwrap();
        zip.write_all(&(header.len() as u16).to_le_bytes()).unwrap();
        zip.write_all(header.as_bytes()).unwrap();
        zip.write_all(&[7u8; 100]).unwrap();
        zip.finish().unwrap();
        assert!(matches!(
            Npz::open(&path),
            Err(DamagedNpz::WrongDataSize {
                expected: 2_352_000,
                stored: Some(100),
                ..
            })
        ));
    }
}
