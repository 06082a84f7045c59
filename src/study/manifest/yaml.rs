//! The manifest's YAML wording: the grid keys a stage may vary, refused at their line
//! and column when unknown, and serde_yaml's messages made to say where and what was
//! meant (a near-miss key, the forms of `ensemble`).

use crate::study::ensemble::{FORMS, UNTAGGED_ERROR};
use anyhow::anyhow;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_yaml::{Mapping, Value};
use std::fmt;

/// Every key a grid may vary: the hyperparameters of each model kind, then
/// `TRAINING_KEYS`. Whether a model key fits the stage's model is known only once its
/// `from` winner is, at plan time; a key in none of them is a typo, refused while the
/// manifest is read, where its line is known.
pub const GRID_KEYS: [&str; 40] = [
    "kind",
    "hidden",
    "activation",
    "dropout",
    "kernels",
    "kernel_size",
    "pool",
    "stem_filters",
    "stem_kernel",
    "layers",
    "growth",
    "bottleneck",
    "width",
    // Training keys from here on: `TRAINING_KEYS`.
    "epochs",
    "batch_size",
    "optimizer",
    "update_rules",
    "learning_rate",
    "monitor",
    "seed",
    "momentum",
    "nesterov",
    "weight_decay",
    "beta_1",
    "beta_2",
    "epsilon",
    "rho",
    "schedule",
    "step_size",
    "gamma",
    "patience",
    "augment",
    "crop_padding",
    "rotate",
    "color_jitter",
    "label_smoothing",
    "mixup",
    "cutmix",
    "warmup_epochs",
    "ema",
];

/// Grid keys that set training rather than the model: the tail of `GRID_KEYS`.
pub const TRAINING_KEYS: &[&str] = GRID_KEYS.split_at(13).1;

/// serde_yaml's message with two additions: the position also when it is the very
/// start of the file (serde_yaml leaves out line 1 column 1, so an unknown key on the
/// first line had none), and for an unknown key, the known one it nearly spells.
pub(super) fn explain_yaml_error(error: serde_yaml::Error) -> anyhow::Error {
    let mut message = error.to_string().replace(UNTAGGED_ERROR, FORMS);
    if let Some(location) = error.location() {
        let at = format!("at line {} column {}", location.line(), location.column());
        if !message.contains(&at) {
            message = format!("{message} {at}");
        }
    }
    if let Some(near) = unknown_key_near_miss(&message) {
        message = format!("{message}: did you mean `{near}`?");
    }
    anyhow!(message)
}

/// The name nearest to the key in serde's "unknown field `typo`, expected one of
/// `a`, `b`", when it is near enough to be a typo of it.
fn unknown_key_near_miss(message: &str) -> Option<&str> {
    let (typed, expected) = message.split("unknown field `").nth(1)?.split_once('`')?;
    // The expected names are the back-quoted words after the unknown one.
    let known = expected.split('`').skip(1).step_by(2);
    nearest_name(typed, known)
}

/// The known name within two edits (a swap of neighbours counts as one) of `typed`,
/// the nearest first; none for names too short for two edits to mean a typo.
fn nearest_name<'a>(typed: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|name| (strsim::damerau_levenshtein(typed, name), name))
        .filter(|&(edits, _)| edits <= 2 && edits < typed.chars().count())
        .min_by_key(|&(edits, _)| edits)
        .map(|(_, name)| name)
}

/// Reads a stage's `grid`, refusing a key that no model or training has while its
/// line and column are still known.
pub(super) fn grid_of_known_keys<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Mapping, D::Error> {
    struct GridVisitor;
    impl<'de> Visitor<'de> for GridVisitor {
        type Value = Mapping;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a mapping of setting names to lists of values")
        }

        fn visit_unit<E: de::Error>(self) -> Result<Mapping, E> {
            Ok(Mapping::new())
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Mapping, A::Error> {
            let mut grid = Mapping::new();
            while let Some(key) = map.next_key_seed(GridKey)? {
                let values: Value = map.next_value()?;
                if grid.insert(Value::from(key.as_str()), values).is_some() {
                    return Err(de::Error::custom(format!(
                        "grid `{key}` is given twice: list all its values once"
                    )));
                }
            }
            Ok(grid)
        }
    }
    deserializer.deserialize_map(GridVisitor)
}

/// A grid key, checked inside the key's own deserialisation: serde_yaml then reports
/// an unknown one at the key's line and column.
struct GridKey;

impl<'de> DeserializeSeed<'de> for GridKey {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for GridKey {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a model or training setting name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<String, E> {
        if GRID_KEYS.contains(&key) {
            Ok(key.to_string())
        } else {
            Err(E::unknown_field(key, &GRID_KEYS))
        }
    }
}

/// Where `key` is written for stage `stage` in a manifest's `text`, as (line, column),
/// both from 1: in the stage's own entry (from its `within` key on, when given: `grid`
/// or `space` for a value the stage varies), else in `defaults`. Values are checked
/// after parsing (a grid crosses them, a winner's settings join them), when the
/// parser's positions are gone; this finds the key again in the text, in block or flow
/// style.
pub fn locate(text: &str, stage: &str, key: &str, within: Option<&str>) -> Option<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let in_lines = |range: std::ops::Range<usize>| {
        range
            .into_iter()
            .find_map(|i| key_column(lines[i], key).map(|column| (i + 1, column + 1)))
    };
    let stage_entry = stage_entry(&lines, stage);
    let in_stage = stage_entry.and_then(|entry| {
        let from = within.and_then(|within| {
            entry
                .clone()
                .find(|&i| key_column(lines[i], within).is_some())
        });
        in_lines(from.unwrap_or(entry.start)..entry.end)
    });
    in_stage.or_else(|| {
        let start = lines
            .iter()
            .position(|line| line.starts_with("defaults:"))?;
        in_lines(start..block_end(&lines, start, 1))
    })
}

/// The lines of the `stages` entry named `stage`: from its `- ` to the next line as far
/// left as that dash.
fn stage_entry(lines: &[&str], stage: &str) -> Option<std::ops::Range<usize>> {
    let stages = lines.iter().position(|line| line.starts_with("stages:"))?;
    let named = stages
        + lines[stages..]
            .iter()
            .position(|line| name_in(line) == Some(stage))?;
    let start = (0..=named)
        .rev()
        .find(|&i| lines[i].trim_start().starts_with('-'))?;
    let dash = indentation(lines[start]);
    Some(start..block_end(lines, start, dash + 1))
}

/// The line after the block that starts at `start`: the next line with content that
/// is indented less than `inside`.
fn block_end(lines: &[&str], start: usize, inside: usize) -> usize {
    (start + 1..lines.len())
        .find(|&i| {
            let content = lines[i].trim_start();
            !content.is_empty() && !content.starts_with('#') && indentation(lines[i]) < inside
        })
        .unwrap_or(lines.len())
}

/// The value of a `name:` key in `line`, unquoted.
fn name_in(line: &str) -> Option<&str> {
    let column = key_column(line, "name")?;
    let value = line[column + "name".len()..]
        .trim_start()
        .strip_prefix(':')?;
    let value = value.split([',', '}', '#']).next()?.trim();
    Some(value.trim_matches(['"', '\'']))
}

fn indentation(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// The byte column of `key` written as a mapping key in `line` (`key:` after the start,
/// a space, `{`, `,` or `- `), outside a comment.
fn key_column(line: &str, key: &str) -> Option<usize> {
    let code = line.split(" #").next().unwrap_or(line);
    code.match_indices(key).map(|(at, _)| at).find(|&at| {
        let before = code[..at].chars().next_back();
        let after = code[at + key.len()..].trim_start();
        matches!(before, None | Some(' ' | '{' | ',' | '-')) && after.starts_with(':')
    })
}

#[cfg(test)]
mod tests {
    use super::locate;

    const TEXT: &str = "dataset: {name: cnn}   # a set named like a stage
defaults:
  epochs: 3
  learning_rate: 0.1
stages:
  - name: mlp
    model: {kind: mlp, hidden: 4}
  - model: {kind: cnn, kernels: 2, kernel_size: 3}
    name: \"cnn\"
    training: {batch_size: 0}
    grid:
      kernel_size: [3, 4]   # kernel_size: here is a comment
  - {name: flow, model: {kind: mlp, hidden: 0}}
";

    #[test]
    fn a_key_is_found_in_its_stages_entry_its_grid_or_the_defaults() {
        assert_eq!(locate(TEXT, "mlp", "hidden", None), Some((7, 24)));
        // The entry starts at its dash, whichever key comes first.
        assert_eq!(locate(TEXT, "cnn", "kernel_size", None), Some((8, 36)));
        assert_eq!(
            locate(TEXT, "cnn", "kernel_size", Some("grid")),
            Some((12, 7))
        );
        assert_eq!(locate(TEXT, "cnn", "batch_size", None), Some((10, 16)));
        // Not in the stage: the defaults' value is the one used.
        assert_eq!(locate(TEXT, "mlp", "learning_rate", None), Some((4, 3)));
        assert_eq!(locate(TEXT, "flow", "hidden", None), Some((13, 37)));
        assert_eq!(locate(TEXT, "mlp", "momentum", None), None);
        assert_eq!(locate(TEXT, "missing", "hidden", None), None);
    }
}
