//! `cellnets list`'s text: each stage's runs with their trainable and frozen parameter
//! counts, the halving rungs and the epochs they will spend, without training.

use crate::data;
use crate::models::{count_parameters, InputShape};
use crate::outputs::proposals::proposals_note;
use crate::outputs::winners;
use crate::report::markdown::count;
use crate::runner::transfer::freeze;
use crate::study::manifest::{DatasetSpec, Manifest};
use crate::study::plan::StagePlan;
use crate::study::search::HalvingMode;
use crate::study::task::Task;
use anyhow::Result;
use std::fmt::Write;
use std::path::Path;
use tch::{nn, Device};

/// A table per stage: run name, trainable and frozen parameters. Stages that start
/// from a winner not yet recorded under `out_dir` are shown from a provisional one.
pub fn describe(manifest: &Manifest, data_dir: &Path, out_dir: &Path) -> Result<String> {
    let plans = winners::plan_with_recorded_winners(manifest, out_dir)?;
    let mut shapes: Vec<(DatasetSpec, (InputShape, Task))> = Vec::new();
    let mut text = String::new();
    for (stage, provisional) in &plans {
        if let Some(ensemble) = &stage.ensemble {
            writeln!(
                text,
                "{}: an ensemble (trains nothing; tests the mean of its members' \
                 probabilities): {ensemble}",
                stage.name,
            )?;
            continue;
        }
        let first = &stage.runs[0];
        let shape = match shapes.iter().find(|(spec, _)| *spec == first.dataset) {
            Some((_, shape)) => *shape,
            None => {
                let shape = data::probe(data_dir, &first.dataset)?;
                shapes.push((first.dataset.clone(), shape));
                shape
            }
        };
        write_stage_header(&mut text, stage, shape)?;
        if stage.proposals.is_some() {
            let note = proposals_note(out_dir, stage)?;
            writeln!(
                text,
                "  {}; the runs below are those proposed so far (the first before any)",
                note.trim_start_matches("; ")
            )?;
        }
        if *provisional {
            let source = manifest
                .stages
                .iter()
                .find(|s| s.name == stage.name)
                .and_then(|s| s.from.as_deref())
                .unwrap_or_default();
            writeln!(
                text,
                "  (`{source}` has not run: shown from its pinned or first run until it has a winner)"
            )?;
        }
        write_parameter_table(&mut text, stage, shape.0)?;
    }
    Ok(text)
}

/// The stage's line: runs, data and its shape, epochs; and its rungs under halving.
fn write_stage_header(
    text: &mut String,
    stage: &StagePlan,
    (input, task): (InputShape, Task),
) -> Result<()> {
    let first = &stage.runs[0];
    writeln!(
        text,
        "{}: {} run(s) on {} ({}x{}x{}, {} {}), {} epochs",
        stage.name,
        stage
            .proposals
            .as_ref()
            .map_or(stage.runs.len(), |p| p.count),
        first.dataset.file_name(),
        input.channels,
        input.height,
        input.width,
        input.classes,
        task.outputs_noun(),
        first.training.epochs,
    )?;
    if let Some(rungs) = &stage.halving {
        let runs = stage
            .proposals
            .as_ref()
            .map_or(stage.runs.len(), |p| p.count);
        // ASHA promotes early arrivals against fewer rivals, so it may train more.
        let bound = match rungs.halving.mode {
            HalvingMode::Sync => "",
            HalvingMode::Async => "at least ",
        };
        writeln!(
            text,
            "  halving: {}; {bound}{} epochs if no run stops early, against {} for every \
             run to the budget",
            rungs.describe(),
            rungs.planned_epochs(runs),
            runs * rungs.budget()
        )?;
    }
    Ok(())
}

/// Each run's trainable and frozen parameters, counted on the model it builds.
fn write_parameter_table(text: &mut String, stage: &StagePlan, input: InputShape) -> Result<()> {
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
        if let Some(transfer) = run.transfer.as_ref().filter(|transfer| transfer.freeze) {
            freeze(&vs, &transfer.layers)?;
        }
        let (trainable, frozen) = count_parameters(&vs);
        writeln!(
            text,
            "  {:width$}  {:>12}  {:>12}",
            run.name,
            count(trainable),
            count(frozen)
        )?;
    }
    Ok(())
}
