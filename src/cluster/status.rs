//! `cellnets status`: where each stage's runs stand, from the files under out/ alone
//! (results, claims, resume points), so it can watch a study that other processes or
//! SLURM tasks are training.

use crate::cluster::claim;
use crate::outputs::run_folder::RunFolder;
use crate::outputs::winners;
use crate::study::manifest::Manifest;
use crate::study::plan::RunPlan;
use crate::train::Outcome;
use anyhow::Result;
use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

/// Where one run stands.
#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    Finished,
    Diverged,
    /// A live claim: who holds it and the last epoch it committed.
    Training {
        holder: String,
        epoch: Option<usize>,
    },
    /// Nobody trains it; `epoch` is where an interrupted run resumes.
    Waiting {
        epoch: Option<usize>,
        stale_claim: Option<String>,
    },
}

impl RunState {
    fn label(&self) -> &'static str {
        match self {
            RunState::Finished => "finished",
            RunState::Diverged => "diverged",
            RunState::Training { .. } => "training",
            RunState::Waiting { .. } => "waiting",
        }
    }
}

/// Where `run` stands under `out_dir`. A result of other settings does not count: the
/// run will be redone.
pub fn run_state(out_dir: &Path, run: &RunPlan, claim_timeout: Duration) -> Result<RunState> {
    let folder = RunFolder::of(out_dir, run);
    if let Ok(Some(finished)) = folder.read_result() {
        if finished.plan.same_settings(run) {
            return Ok(match finished.summary.status {
                Outcome::Diverged => RunState::Diverged,
                _ => RunState::Finished,
            });
        }
    }
    let epoch = folder.last_committed_epoch();
    Ok(match claim::inspect(&folder.claim_file(), claim_timeout)? {
        Some(seen) if !seen.stale => RunState::Training {
            holder: seen.holder.describe(),
            epoch,
        },
        Some(seen) => RunState::Waiting {
            epoch,
            stale_claim: Some(format!(
                "{}, silent for {} s",
                seen.holder.describe(),
                seen.silent_for.as_secs()
            )),
        },
        None => RunState::Waiting {
            epoch,
            stale_claim: None,
        },
    })
}

/// A block per stage: its counts, then a line per run that has not finished cleanly.
pub fn describe(manifest: &Manifest, out_dir: &Path, claim_timeout: Duration) -> Result<String> {
    let plans = winners::plan_with_recorded_winners(manifest, out_dir)?;
    let mut text = String::new();
    for (stage, provisional) in &plans {
        let mut states = Vec::new();
        for run in &stage.runs {
            states.push((run, run_state(out_dir, run, claim_timeout)?));
        }
        let count = |label: &str| states.iter().filter(|(_, s)| s.label() == label).count();
        let winner = winners::read_winner(out_dir, &stage.name)?
            .map(|winner| format!(", winner {}", winner.run))
            .unwrap_or_default();
        writeln!(
            text,
            "{}: {} finished, {} training, {} waiting, {} diverged (of {}){winner}{}",
            stage.name,
            count("finished"),
            count("training"),
            count("waiting"),
            count("diverged"),
            stage.runs.len(),
            if *provisional {
                "; starts from a stage that has no winner yet"
            } else {
                ""
            }
        )?;
        for (run, state) in &states {
            let epochs = run.training.epochs;
            let at = |epoch: &Option<usize>| match epoch {
                Some(epoch) => format!("epoch {epoch}/{epochs} committed"),
                None => "no epoch committed".to_string(),
            };
            let detail = match state {
                RunState::Finished => continue,
                RunState::Diverged => "a loss became NaN or infinite".to_string(),
                RunState::Training { holder, epoch } => format!("{}, by {holder}", at(epoch)),
                RunState::Waiting { epoch, stale_claim } => match stale_claim {
                    Some(stale) => format!("{}; stale claim of {stale}", at(epoch)),
                    None => at(epoch),
                },
            };
            writeln!(text, "  {:<9} {}  {detail}", state.label(), run.name)?;
        }
    }
    Ok(text)
}
