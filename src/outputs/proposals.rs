//! A TPE stage's proposals as out/ keeps them: one file per configuration drawn, written
//! atomically before its run trains, saying what it was drawn from (the results it saw,
//! by run, and the runs still pending), so that a rerun reuses it and the report can
//! show why it was proposed. They live in `out/<stage>/.proposals/<fingerprint>/`, the
//! fingerprint of what the proposals depend on besides the results, so a manifest that
//! changes the space or the seed draws a series of its own.

use crate::outputs::run_folder::{RunFolder, StageFolder};
use crate::storage::files::{read_yaml, write_yaml};
use crate::study::plan::{Proposals, RunPlan, StagePlan};
use crate::study::search::tpe::Drawn;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};
use std::path::{Path, PathBuf};

/// The file a proposal's run folder keeps a copy of its record in.
pub const PROPOSAL_YAML: &str = "proposal.yaml";

/// One drawn configuration and what it was drawn from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProposalRecord {
    /// Its position in the series, from 0 (its run is `sample=<index + 1>,...`).
    pub index: usize,
    pub run: String,
    /// The value of each key of the space, in the space's order.
    pub values: Mapping,
    /// At random (startup, or BOHB's random share), or from the model.
    pub drawn: Drawn,
    /// Under halving, the rung (its epoch) whose results the model was fitted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rung: Option<usize>,
    /// The earlier configurations it saw, in order: each one's value, or pending.
    pub saw: Vec<Seen>,
}

/// An earlier configuration as a proposal saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seen {
    pub run: String,
    /// Its objective (the stage's winner rule, at the model's rung under halving);
    /// none while it was pending (drawn, not yet valued: Optuna's constant liar counts
    /// it as bad).
    #[serde(default)]
    pub value: Option<f64>,
}

impl ProposalRecord {
    /// Its values in the order of `proposals`' space.
    pub fn ordered_values(&self, proposals: &Proposals) -> Result<Vec<Value>> {
        proposals
            .space
            .iter()
            .map(|(key, _)| {
                self.values.get(key.as_str()).cloned().with_context(|| {
                    format!("proposal {} of run {} has no `{key}`", self.index, self.run)
                })
            })
            .collect()
    }

    /// How it was drawn, in words: `at random (3 of 10 startup results)`, `from the
    /// best 2 of 14 (3 pending)`.
    pub fn describe(&self) -> String {
        let finished = self.saw.iter().filter(|seen| seen.value.is_some()).count();
        let pending = self.saw.len() - finished;
        let rung = self
            .rung
            .map(|epoch| format!(" at the rung of epoch {epoch}"))
            .unwrap_or_default();
        match &self.drawn {
            Drawn::Startup => format!("at random (startup: {finished} result(s) known)"),
            Drawn::RandomFraction => "at random (BOHB's random share)".to_string(),
            Drawn::Model { good, bad } => format!(
                "by TPE from the best {good} of {} result(s){rung}, {pending} pending among \
                 the {bad} others",
                good + bad - pending
            ),
        }
    }
}

/// Where a stage's series of proposals is kept.
pub fn proposals_dir(out_dir: &Path, stage: &str, proposals: &Proposals) -> PathBuf {
    StageFolder::new(out_dir, stage)
        .run(".proposals")
        .dir()
        .join(proposals.fingerprint())
}

fn record_path(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("{index:05}.yaml"))
}

/// The lock that makes drawing a proposal one step among processes.
pub fn draw_lock(out_dir: &Path, stage: &str, proposals: &Proposals) -> PathBuf {
    proposals_dir(out_dir, stage, proposals).join(".draw.lock")
}

/// The proposals of `plan` drawn so far, in order (a stage without TPE has none).
pub fn read_proposals(out_dir: &Path, plan: &StagePlan) -> Result<Vec<ProposalRecord>> {
    let Some(proposals) = &plan.proposals else {
        return Ok(Vec::new());
    };
    let dir = proposals_dir(out_dir, &plan.name, proposals);
    let mut records = Vec::new();
    while records.len() < proposals.count {
        match read_yaml::<ProposalRecord>(&record_path(&dir, records.len()))? {
            Some(record) => records.push(record),
            None => break,
        }
    }
    Ok(records)
}

/// Writes `record` (atomically: a proposal is whole or absent), and its copy in its
/// run's folder.
pub fn write_proposal(
    out_dir: &Path,
    plan: &StagePlan,
    record: &ProposalRecord,
    run: &RunPlan,
) -> Result<()> {
    let proposals = plan.proposals.as_ref().expect("a TPE stage");
    let dir = proposals_dir(out_dir, &plan.name, proposals);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    write_yaml(&record_path(&dir, record.index), record)?;
    let folder = RunFolder::of(out_dir, run);
    folder.create()?;
    write_yaml(&folder.dir().join(PROPOSAL_YAML), record)
}

/// The runs of the proposals drawn so far.
pub fn drawn_runs(plan: &StagePlan, records: &[ProposalRecord]) -> Result<Vec<RunPlan>> {
    let Some(proposals) = &plan.proposals else {
        return Ok(plan.runs.clone());
    };
    records
        .iter()
        .map(|record| proposals.run(record.index, &record.ordered_values(proposals)?))
        .collect()
}

/// `plan` with a TPE stage's runs those drawn under `out_dir` so far (its first
/// proposal alone when none is); other stages as they are.
pub fn with_drawn(out_dir: &Path, plan: &StagePlan) -> Result<StagePlan> {
    let records = read_proposals(out_dir, plan)?;
    let mut plan = plan.clone();
    if !records.is_empty() {
        plan.runs = drawn_runs(&plan, &records)?;
    }
    Ok(plan)
}

/// Whether every configuration of a TPE stage is drawn (any other stage's are).
pub fn all_drawn(plan: &StagePlan) -> bool {
    plan.proposals
        .as_ref()
        .is_none_or(|proposals| plan.runs.len() >= proposals.count)
}

/// `; TPE: 5 of 14 proposed, 2 pending` (`TPE with halving (BOHB)` under halving) for
/// a TPE stage's line in `cellnets status` and `list`; empty for any other stage.
/// Pending: proposed, without a result yet (training, waiting, or paused at a rung).
pub fn proposals_note(out_dir: &Path, plan: &StagePlan) -> Result<String> {
    let Some(proposals) = &plan.proposals else {
        return Ok(String::new());
    };
    let records = read_proposals(out_dir, plan)?;
    let runs = drawn_runs(plan, &records)?;
    let pending = runs
        .iter()
        .filter(|run| !RunFolder::of(out_dir, run).has_result_of(run))
        .count();
    let method = match plan.halving {
        Some(_) => "TPE with halving (BOHB)",
        None => "TPE",
    };
    Ok(format!(
        "; {method}: {} of {} proposed, {pending} pending",
        records.len(),
        proposals.count
    ))
}
