//! TensorBoard event files, written by hand (TFRecord framing, masked CRC-32C, Event,
//! Summary and HParams protobufs), so `tensorboard --logdir out` shows a study. They
//! hold a run's scalars per epoch and its hyperparameters for the HParams plugin.
//!
//! The format is small. A file is a sequence of TFRecords (a little-endian u64 length,
//! its masked CRC-32C, the bytes, their masked CRC-32C), each an `Event` protobuf. The
//! first event names the file version; scalars are `Summary.Value.simple_value`; the
//! HParams plugin reads a session's start (hyperparameters) and end (status) from
//! summaries whose metadata carries an `HParamsPluginData` message. The protobuf
//! messages are encoded here field by field, from tensorboard's .proto files (field
//! numbers noted at each); `tests/tensorboard.rs` reads the files back with TensorBoard.

use anyhow::{Context, Result};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// TensorBoard finds event files by this part of their name.
pub const EVENT_FILE_PREFIX: &str = "events.out.tfevents.";

/// An event file's records, built in memory and written by the caller.
#[derive(Default)]
pub struct Events {
    bytes: Vec<u8>,
}

/// How a session (a run) ended, as the HParams plugin's `Status` enum numbers them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SessionStatus {
    Success = 1,
    Failure = 2,
}

/// A hyperparameter's value: the HParams plugin sorts and filters numbers as numbers.
#[derive(Debug, Clone, PartialEq)]
pub enum HParam {
    Number(f64),
    Bool(bool),
    Text(String),
}

impl HParam {
    /// A setting as cellnets writes it: a number, true/false, or text.
    pub fn parse(value: &str) -> Self {
        match value {
            "true" => HParam::Bool(true),
            "false" => HParam::Bool(false),
            _ => match value.parse::<f64>() {
                Ok(number) if number.is_finite() => HParam::Number(number),
                _ => HParam::Text(value.to_string()),
            },
        }
    }
}

impl Events {
    /// The first event of every file: `file_version` (Event field 3).
    pub fn file_version(&mut self, wall_time: f64) {
        let mut event = event_header(wall_time, 0);
        string_field(&mut event, 3, "brain.Event:2");
        self.record(&event);
    }

    /// Scalars of one step: each (tag, value) a `Summary.Value` with `simple_value`.
    pub fn scalars(&mut self, wall_time: f64, step: i64, values: &[(&str, f64)]) {
        let mut summary = Vec::new();
        for (tag, value) in values {
            let mut entry = Vec::new();
            string_field(&mut entry, 1, tag); // Value.tag
            key(&mut entry, 2, FIXED32); // Value.simple_value (float)
            entry.extend_from_slice(&(*value as f32).to_le_bytes());
            message_field(&mut summary, 1, &entry); // Summary.value
        }
        self.summary(wall_time, step, &summary);
    }

    /// The HParams plugin's session start: the run's hyperparameters.
    pub fn session_start(&mut self, wall_time: f64, hparams: &[(String, HParam)]) {
        let mut start = Vec::new();
        for (name, value) in hparams {
            let mut entry = Vec::new(); // a map entry: key 1, value 2
            string_field(&mut entry, 1, name);
            message_field(&mut entry, 2, &protobuf_value(value));
            message_field(&mut start, 1, &entry); // SessionStartInfo.hparams
        }
        key(&mut start, 5, FIXED64); // SessionStartInfo.start_time_secs
        start.extend_from_slice(&wall_time.to_le_bytes());
        self.hparams(wall_time, "_hparams_/session_start_info", 3, &start);
    }

    /// The HParams plugin's session end, with how the run ended.
    pub fn session_end(&mut self, wall_time: f64, status: SessionStatus) {
        let mut end = Vec::new();
        varint_field(&mut end, 1, status as u64); // SessionEndInfo.status
        key(&mut end, 2, FIXED64); // SessionEndInfo.end_time_secs
        end.extend_from_slice(&wall_time.to_le_bytes());
        self.hparams(wall_time, "_hparams_/session_end_info", 4, &end);
    }

    /// The records so far, taken out.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.bytes)
    }

    /// A summary holding `info` as field `field` of `HParamsPluginData` (version 0), in
    /// the plugin's metadata, with the empty float tensor TensorBoard itself writes.
    fn hparams(&mut self, wall_time: f64, tag: &str, field: u32, info: &[u8]) {
        let mut plugin_data = Vec::new();
        message_field(&mut plugin_data, field, info);
        let mut plugin = Vec::new();
        string_field(&mut plugin, 1, "hparams"); // PluginData.plugin_name
        bytes_field(&mut plugin, 2, &plugin_data); // PluginData.content
        let mut metadata = Vec::new();
        message_field(&mut metadata, 1, &plugin); // SummaryMetadata.plugin_data
        let mut entry = Vec::new();
        string_field(&mut entry, 1, tag); // Value.tag
        message_field(&mut entry, 8, &null_tensor()); // Value.tensor
        message_field(&mut entry, 9, &metadata); // Value.metadata
        let mut summary = Vec::new();
        message_field(&mut summary, 1, &entry);
        self.summary(wall_time, 0, &summary);
    }

    fn summary(&mut self, wall_time: f64, step: i64, summary: &[u8]) {
        let mut event = event_header(wall_time, step);
        message_field(&mut event, 5, summary); // Event.summary
        self.record(&event);
    }

    /// TFRecord framing: length, its masked CRC, the data, its masked CRC.
    fn record(&mut self, data: &[u8]) {
        let length = (data.len() as u64).to_le_bytes();
        self.bytes.extend_from_slice(&length);
        self.bytes
            .extend_from_slice(&masked_crc32c(&length).to_le_bytes());
        self.bytes.extend_from_slice(data);
        self.bytes
            .extend_from_slice(&masked_crc32c(data).to_le_bytes());
    }
}

/// An event file being appended to, one flushed write per batch of records.
pub struct EventFile {
    file: File,
    path: PathBuf,
}

impl EventFile {
    /// Writes `first` as a new event file in `dir` (whole, or not at all), and keeps it
    /// open to append. Its name sorts after the files of earlier processes.
    pub fn create(dir: &Path, first: &[u8]) -> Result<Self> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let name = format!(
            "{EVENT_FILE_PREFIX}{:010}.{:09}.cellnets.{}",
            now.as_secs(),
            now.subsec_nanos(),
            std::process::id()
        );
        let path = dir.join(name);
        crate::storage::files::write_atomically(&path, |tmp| Ok(std::fs::write(tmp, first)?))?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(EventFile { file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn append(&mut self, records: &[u8]) -> Result<()> {
        self.file
            .write_all(records)
            .and_then(|()| self.file.flush())
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

/// The event files in `dir`, in TensorBoard's reading order (by name).
pub fn event_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry?;
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(EVENT_FILE_PREFIX)
        {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

pub fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

fn event_header(wall_time: f64, step: i64) -> Vec<u8> {
    let mut event = Vec::new();
    key(&mut event, 1, FIXED64); // Event.wall_time
    event.extend_from_slice(&wall_time.to_le_bytes());
    if step != 0 {
        varint_field(&mut event, 2, step as u64); // Event.step
    }
    event
}

/// google.protobuf.Value: number_value 2, string_value 3, bool_value 4.
fn protobuf_value(value: &HParam) -> Vec<u8> {
    let mut bytes = Vec::new();
    match value {
        HParam::Number(number) => {
            key(&mut bytes, 2, FIXED64);
            bytes.extend_from_slice(&number.to_le_bytes());
        }
        HParam::Text(text) => string_field(&mut bytes, 3, text),
        HParam::Bool(flag) => varint_field(&mut bytes, 4, u64::from(*flag)),
    }
    bytes
}

/// TensorProto { dtype: DT_FLOAT (1), tensor_shape { dim { size: 0 } } }: the empty
/// tensor that carries only metadata.
fn null_tensor() -> Vec<u8> {
    let mut dim_list = Vec::new();
    message_field(&mut dim_list, 2, &[]); // TensorShapeProto.dim, size 0 by default
    let mut tensor = Vec::new();
    varint_field(&mut tensor, 1, 1); // TensorProto.dtype
    message_field(&mut tensor, 2, &dim_list); // TensorProto.tensor_shape
    tensor
}

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LENGTH_DELIMITED: u32 = 2;
const FIXED32: u32 = 5;

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn key(out: &mut Vec<u8>, field: u32, wire_type: u32) {
    varint(out, u64::from(field << 3 | wire_type));
}

fn varint_field(out: &mut Vec<u8>, field: u32, value: u64) {
    key(out, field, VARINT);
    varint(out, value);
}

fn bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    key(out, field, LENGTH_DELIMITED);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn string_field(out: &mut Vec<u8>, field: u32, text: &str) {
    bytes_field(out, field, text.as_bytes());
}

fn message_field(out: &mut Vec<u8>, field: u32, message: &[u8]) {
    bytes_field(out, field, message);
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as TFRecord uses it.
fn crc32c(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut crc = i as u32;
            let mut bit = 0;
            while bit < 8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0x82F6_3B78
                } else {
                    crc >> 1
                };
                bit += 1;
            }
            table[i] = crc;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &byte in data {
        crc = TABLE[((crc ^ u32::from(byte)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

/// TFRecord's mask: a CRC stored beside data that itself holds CRCs stays telling.
fn masked_crc32c(data: &[u8]) -> u32 {
    let crc = crc32c(data);
    crc.rotate_right(15).wrapping_add(0xA282_EAD8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_published_check_values() {
        // RFC 3720, B.4: 32 bytes of zeros, of 0xFF, and ascending.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
        let ascending: Vec<u8> = (0..32).collect();
        assert_eq!(crc32c(&ascending), 0x46DD_794E);
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn a_record_frames_its_data_with_length_and_masked_crcs() {
        let mut events = Events::default();
        events.record(b"abc");
        let bytes = events.take();
        assert_eq!(bytes.len(), 8 + 4 + 3 + 4);
        assert_eq!(&bytes[..8], &3u64.to_le_bytes());
        let masked = |crc: u32| crc.rotate_right(15).wrapping_add(0xA282_EAD8);
        assert_eq!(&bytes[8..12], &masked(crc32c(&bytes[..8])).to_le_bytes());
        assert_eq!(&bytes[12..15], b"abc");
        assert_eq!(&bytes[15..], &masked(crc32c(b"abc")).to_le_bytes());
    }

    #[test]
    fn protobuf_fields_encode_as_the_wire_format_says() {
        let mut bytes = Vec::new();
        varint_field(&mut bytes, 2, 300);
        assert_eq!(bytes, [0x10, 0xAC, 0x02]);
        let mut bytes = Vec::new();
        string_field(&mut bytes, 1, "hi");
        assert_eq!(bytes, [0x0A, 2, b'h', b'i']);
        assert_eq!(null_tensor(), [0x08, 0x01, 0x12, 0x02, 0x12, 0x00]);
    }

    #[test]
    fn settings_become_numbers_flags_or_text() {
        assert_eq!(HParam::parse("0.01"), HParam::Number(0.01));
        assert_eq!(HParam::parse("true"), HParam::Bool(true));
        assert_eq!(HParam::parse("relu"), HParam::Text("relu".into()));
        assert_eq!(HParam::parse("NaN"), HParam::Text("NaN".into()));
    }
}
