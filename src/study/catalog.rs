//! The MedMNIST 2D sets and the benchmark's results, built in from
//! src/study/medmnist.yaml. For each set: its task, channels, label names, official
//! split sizes and file checksums, and the MedMNIST v2 benchmark's published test
//! results, so that a manifest names a set and a report sets its runs beside the
//! benchmark.

use crate::study::task::Task;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::OnceLock;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Method key -> its name in the benchmark's table, in the table's order.
    pub baseline_methods: Ordered,
    pub sets: BTreeMap<String, MedMnistSet>,
    /// Set -> MedMNIST+'s best published test accuracies on it, by image side.
    #[serde(default)]
    pub medmnist_plus: BTreeMap<String, Vec<PlusResult>>,
}

/// A MedMNIST+ test accuracy (Doerrich et al. 2024) at one image side.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlusResult {
    pub size: u32,
    pub acc: f64,
}

/// Where the MedMNIST+ numbers come from, for the report.
pub const MEDMNIST_PLUS: &str = "MedMNIST+ (Doerrich et al., Sci Rep 2025, arXiv:2404.15786; \
                                 best ImageNet-pretrained network trained end to end)";

/// The line that sets a set's MedMNIST+ accuracies beside a report's; empty when it has none.
pub fn medmnist_plus_line(name: &str) -> String {
    let Some(results) = catalog().medmnist_plus.get(name) else {
        return String::new();
    };
    let by_size: Vec<String> = results
        .iter()
        .map(|result| format!("{:.3} at {}x{}", result.acc, result.size, result.size))
        .collect();
    format!(
        "Published {name} test accuracies of {MEDMNIST_PLUS}: {}.\n\n",
        by_size.join(", ")
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MedMnistSet {
    pub task: Task,
    pub channels: i64,
    pub labels: Vec<String>,
    pub samples: SplitSizes,
    /// Image side -> MD5 of the official file.
    pub md5: BTreeMap<u32, String>,
    /// Method key -> its published test results.
    #[serde(default)]
    pub baselines: BTreeMap<String, Published>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitSizes {
    pub train: i64,
    pub val: i64,
    pub test: i64,
}

/// A published test result; the benchmark's copies give some methods only one of them.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Published {
    pub acc: Option<f64>,
    pub auc: Option<f64>,
}

/// The image sides the official files come in.
pub const SIZES: [u32; 4] = [28, 64, 128, 224];

/// The catalog, parsed once.
pub fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| {
        serde_yaml::from_str(include_str!("medmnist.yaml"))
            .expect("src/study/medmnist.yaml is valid")
    })
}

/// The MedMNIST set named `name`, if it is one of the collection's.
pub fn set(name: &str) -> Option<&'static MedMnistSet> {
    catalog().sets.get(name)
}

/// The official MD5 of a file name such as `dermamnist_128.npz`.
pub fn official_md5(file_name: &str) -> Option<&'static str> {
    let stem = file_name.strip_suffix(".npz")?;
    let (name, size) = match stem.rsplit_once('_') {
        Some((name, size)) => (name, size.parse().ok()?),
        None => (stem, 28),
    };
    set(name)?.md5.get(&size).map(String::as_str)
}

/// Display name of a baseline method key (`resnet18_28` -> `ResNet-18 (28)`).
pub fn method_name(key: &str) -> Option<&'static str> {
    catalog()
        .baseline_methods
        .0
        .iter()
        .find(|(known, _)| known == key)
        .map(|(_, name)| name.as_str())
}

/// Baseline method keys in the benchmark table's order.
pub fn method_keys() -> impl Iterator<Item = &'static str> {
    catalog()
        .baseline_methods
        .0
        .iter()
        .map(|(key, _)| key.as_str())
}

/// A YAML mapping of names, in its written order.
#[derive(Debug)]
pub struct Ordered(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mapping = serde_yaml::Mapping::deserialize(deserializer)?;
        mapping
            .into_iter()
            .map(|(key, value)| match (key, value) {
                (serde_yaml::Value::String(key), serde_yaml::Value::String(value)) => {
                    Ok((key, value))
                }
                _ => Err(serde::de::Error::custom("expected `key: name` strings")),
            })
            .collect::<Result<_, _>>()
            .map(Ordered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_holds_the_twelve_2d_sets_consistently() {
        let catalog = catalog();
        assert_eq!(catalog.sets.len(), 12);
        for (name, set) in &catalog.sets {
            assert_eq!(set.md5.keys().copied().collect::<Vec<_>>(), SIZES, "{name}");
            assert!(set.md5.values().all(|md5| md5.len() == 32), "{name}");
            assert!(matches!(set.channels, 1 | 3), "{name}");
            for (method, published) in &set.baselines {
                assert!(method_name(method).is_some(), "{name}: {method}");
                for value in [published.acc, published.auc].into_iter().flatten() {
                    assert!(value > 0.0 && value <= 1.0, "{name}: {method}");
                }
            }
        }
        let chest = set("chestmnist").unwrap();
        assert_eq!(
            (chest.task, chest.labels.len(), chest.channels),
            (Task::MultiLabel, 14, 1)
        );
        assert_eq!(set("retinamnist").unwrap().task, Task::OrdinalRegression);
        assert_eq!(set("breastmnist").unwrap().task, Task::BinaryClass);
        let blood = set("bloodmnist").unwrap();
        assert_eq!(blood.samples.train, 11959);
        assert_eq!(blood.baselines["resnet18_28"].acc, Some(0.958));
        assert_eq!(
            official_md5("bloodmnist_64.npz"),
            Some("2b94928a2ae4916078ca51e05b6b800b")
        );
        assert_eq!(
            official_md5("bloodmnist.npz"),
            Some("7053d0359d879ad8a5505303e11de1dc")
        );
        assert_eq!(official_md5("mine.npz"), None);
        assert_eq!(method_keys().next(), Some("resnet18_28"));
    }
}
