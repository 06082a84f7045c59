//! `cellnets list`: each stage's runs with their parameter counts, without training.

use crate::data;
use crate::models::count_parameters;
use crate::plan::StagePlan;
use anyhow::Result;
use std::fmt::Write;
use std::path::Path;
use tch::{nn, Device};

/// A table per stage: run name, trainable and frozen parameters.
pub fn describe(plans: &[StagePlan], data_dir: &Path) -> Result<String> {
    let mut text = String::new();
    for stage in plans {
        let Some(first) = stage.runs.first() else {
            continue;
        };
        let input = data::probe(data_dir, &first.dataset)?;
        writeln!(
            text,
            "{}: {} run(s) on {} ({}x{}x{}, {} classes), {} epochs",
            stage.name,
            stage.runs.len(),
            first.dataset.file_name(),
            input.channels,
            input.height,
            input.width,
            input.classes,
            first.training.epochs,
        )?;
        let width = stage
            .runs
            .iter()
            .map(|run| run.name.len())
            .max()
            .unwrap_or(0);
        writeln!(
            text,
            "  {:width$}  {:>12}  {:>12}",
            "run", "trainable", "frozen"
        )?;
        for run in &stage.runs {
            let vs = nn::VarStore::new(Device::Cpu);
            run.model.build(&vs.root(), input);
            let (trainable, frozen) = count_parameters(&vs);
            writeln!(
                text,
                "  {:width$}  {:>12}  {:>12}",
                run.name,
                thousands(trainable),
                thousands(frozen)
            )?;
        }
    }
    Ok(text)
}

fn thousands(n: i64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn thousands_groups_digits() {
        assert_eq!(super::thousands(9_670_664), "9,670,664");
        assert_eq!(super::thousands(616), "616");
        assert_eq!(super::thousands(0), "0");
    }
}
