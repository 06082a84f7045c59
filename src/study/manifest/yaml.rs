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
