//! `cellnets status`: where each stage and run stands, with a training run's pace and
//! time left. It reads the files under out/ alone (results, claims, resume points), so
//! it can watch a study that other processes or SLURM tasks are training.

use crate::cluster::claim;
use crate::outputs::proposals::proposals_note;
use crate::outputs::run_folder::{Failure, RunFolder};
use crate::outputs::rungs::{read_stands, standing, Stand};
use crate::outputs::winners::{self, Recorded};
use crate::study::manifest::Manifest;
use crate::study::plan::{RunPlan, StagePlan};
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
    /// Its last attempt stopped with an error; a rerun retries it, unless it failed too
    /// often in a row.
    Failed {
        failure: Failure,
        epoch: Option<usize>,
    },
    /// Halving: at the rung of epoch `epoch`, which has not decided (or under ASHA, not
    /// promoted it yet).
    Paused {
        epoch: usize,
    },
    /// Halving: a rung left it behind at epoch `epoch`.
    Halted {
        epoch: usize,
    },
}

impl RunState {
    /// The word `cellnets status` prints for it.
    pub fn label(&self) -> &'static str {
        match self {
            RunState::Finished => "finished",
            RunState::Diverged => "diverged",
            RunState::Training { .. } => "training",
            RunState::Waiting { .. } => "waiting",
            RunState::Failed { .. } => "failed",
            RunState::Paused { .. } => "paused",
            RunState::Halted { .. } => "halted",
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
        None => match folder.read_failure() {
            Some(failure) => RunState::Failed { failure, epoch },
            None => RunState::Waiting {
                epoch,
                stale_claim: None,
            },
        },
    })
}

/// How much `describe` says of each stage's runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Detail {
    /// The runs training, diverged, failed or left with a stale claim: what a watcher
    /// acts on.
    Training,
    /// Every run, finished and waiting ones too.
    EveryRun,
}

/// A line per stage (its counts and winner), then a line per run that `detail` asks
/// for; a training run's line gives its pace and the time it has left.
pub fn describe(
    manifest: &Manifest,
    out_dir: &Path,
    claim_timeout: Duration,
    detail: Detail,
) -> Result<String> {
    let plans = winners::plan_with_recorded_winners(manifest, out_dir)?;
    let mut text = String::new();
    for (stage, provisional) in &plans {
        if stage.ensemble.is_some() {
            writeln!(text, "{}", ensemble_line(out_dir, &stage.name)?)?;
            continue;
        }
        let states = stage_states(out_dir, stage, claim_timeout)?;
        let count = |label: &str| states.iter().filter(|(_, s, _)| s.label() == label).count();
        let winner = match winners::recorded_winner(out_dir, stage)? {
            Recorded::Current(winner) => format!(", winner {}", winner.run),
            Recorded::Missing => String::new(),
            // Another manifest's, or this stage's before its grid or settings changed.
            Recorded::OtherDefinition => {
                ", not settled (its winner.yaml is another definition's)".to_string()
            }
        };
        let halving = match &stage.halving {
            Some(rungs) => format!(
                ", {} paused at a rung, {} halted; {}",
                count("paused"),
                count("halted"),
                rungs.describe()
            ),
            None => String::new(),
        };
        let proposals = proposals_note(out_dir, stage)?;
        let planned = stage
            .proposals
            .as_ref()
            .map_or(stage.runs.len(), |p| p.count);
        writeln!(
            text,
            "{}: {} finished, {} training, {} waiting, {} diverged, {} failed{halving} (of \
             {planned}){winner}{proposals}{}",
            stage.name,
            count("finished"),
            count("training"),
            count("waiting"),
            count("diverged"),
            count("failed"),
            if *provisional {
                "; starts from a stage that has no winner yet"
            } else {
                ""
            }
        )?;
        for (run, state, rung) in &states {
            if let Some(detail) = run_detail(out_dir, run, state, *rung, detail) {
                let line = format!("  {:<9} {}  {detail}", state.label(), run.name);
                writeln!(text, "{}", line.trim_end())?;
            }
        }
    }
    Ok(text)
}

/// Where each run of `stage` stands, with, in a halving stage, the rung it trains
/// toward; a halving stage's runs paused at a rung that has not promoted them, and
/// those halted, are told apart from runs waiting to train and finished ones.
fn stage_states<'p>(
    out_dir: &Path,
    stage: &'p StagePlan,
    claim_timeout: Duration,
) -> Result<Vec<(&'p RunPlan, RunState, Option<usize>)>> {
    let halving = match &stage.halving {
        Some(rungs) => {
            // Status reads no data file: each result counts for the data it names.
            let mut stands = read_stands(out_dir, &stage.runs, |_| None, None)?;
            // A TPE stage's proposals not drawn yet are runs not started.
            if let Some(proposals) = &stage.proposals {
                stands.resize(proposals.count, Stand::untrained(&stage.runs[0]));
            }
            Some((standing(rungs, &stage.runs, &stands, false), stands))
        }
        None => None,
    };
    let mut states = Vec::new();
    for (position, run) in stage.runs.iter().enumerate() {
        let state = run_state(out_dir, run, claim_timeout)?;
        let state = match (&halving, state) {
            (Some((_, stands)), RunState::Finished)
                if stands[position].result == Some(Outcome::Halted) =>
            {
                RunState::Halted {
                    epoch: stands[position].trained,
                }
            }
            (
                Some((standing, stands)),
                RunState::Waiting {
                    stale_claim: None, ..
                },
            ) if standing.waiting.contains(&position) => RunState::Paused {
                epoch: stands[position].trained,
            },
            (_, state) => state,
        };
        let rung = match (&stage.halving, &halving) {
            (Some(rungs), Some((_, stands))) => rungs.next_after(stands[position].trained),
            _ => None,
        };
        states.push((run, state, rung));
    }
    Ok(states)
}

/// What a run's line says after its name, or none when `detail` leaves it out; `rung`
/// is the epoch a halving stage's run trains toward now.
fn run_detail(
    out_dir: &Path,
    run: &RunPlan,
    state: &RunState,
    rung: Option<usize>,
    detail: Detail,
) -> Option<String> {
    let epochs = run.training.epochs;
    let toward = match rung {
        Some(rung) if rung < epochs => format!(" (next rung: epoch {rung})"),
        _ => String::new(),
    };
    let at = |epoch: &Option<usize>| match epoch {
        Some(epoch) => format!("epoch {epoch}/{epochs} committed{toward}"),
        None => format!("no epoch committed{toward}"),
    };
    Some(match state {
        RunState::Finished if detail == Detail::EveryRun => String::new(),
        RunState::Finished => return None,
        RunState::Paused { epoch } => {
            format!("epoch {epoch}/{epochs} committed; waiting for the rung of epoch {epoch}")
        }
        RunState::Halted { epoch } if detail == Detail::EveryRun => {
            format!("at epoch {epoch}/{epochs}: not among the best at its rung")
        }
        RunState::Halted { .. } => return None,
        RunState::Diverged => "a loss became NaN or infinite".to_string(),
        RunState::Training { holder, epoch } => {
            // A halving run's time left is to its next rung, where it may stop.
            let until = rung.unwrap_or(epochs);
            let remaining = until.saturating_sub(epoch.unwrap_or(0));
            let pace = Pace::of(&RunFolder::of(out_dir, run))
                .map(|pace| format!("; {}", pace.describe(remaining)))
                .unwrap_or_default();
            format!("{}, by {holder}{pace}", at(epoch))
        }
        RunState::Waiting {
            epoch,
            stale_claim: Some(stale),
        } => format!("{}; stale claim of {stale}", at(epoch)),
        RunState::Waiting { epoch, .. } if detail == Detail::EveryRun => at(epoch),
        RunState::Waiting { .. } => return None,
        RunState::Failed { failure, epoch } => {
            let retry = if failure.gives_up() {
                "not retried without --retry-failed"
            } else {
                "a rerun retries it"
            };
            format!("{}; {}; {retry}", failure.describe(), at(epoch))
        }
    })
}

/// How fast a run trains, from the seconds of its last epochs in epochs.csv.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    pub seconds_per_epoch: f64,
}

impl Pace {
    /// Epochs the pace is averaged over: recent enough to follow a change of load.
    const RECENT: usize = 5;

    /// The mean seconds of the run's last few epochs; none before its first epoch. A
    /// row being written (a half line) is skipped.
    pub fn of(folder: &RunFolder) -> Option<Pace> {
        let epochs = folder.read_epochs().ok()?;
        let seconds: Vec<f64> = epochs.iter().map(|record| record.seconds).collect();
        let recent = &seconds[seconds.len().saturating_sub(Self::RECENT)..];
        (!recent.is_empty()).then(|| Pace {
            seconds_per_epoch: recent.iter().sum::<f64>() / recent.len() as f64,
        })
    }

    /// "3.2 s/epoch, about 4 min left" for `remaining` epochs (early stopping may end
    /// the run sooner).
    pub fn describe(self, remaining: usize) -> String {
        let left = Duration::from_secs_f64(self.seconds_per_epoch * remaining as f64);
        format!(
            "{:.1} s/epoch, about {} left",
            self.seconds_per_epoch,
            human_duration(left)
        )
    }
}

/// A duration as a person reads it: 40 s, 12 min, 3 h 05 min.
pub fn human_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0..=99 => format!("{seconds} s"),
        100..=5999 => format!("{} min", (seconds + 30) / 60),
        _ => {
            let minutes = (seconds + 30) / 60;
            format!("{} h {:02} min", minutes / 60, minutes % 60)
        }
    }
}

/// An ensemble stage's line: its test scores once tested, else that it waits.
fn ensemble_line(out_dir: &Path, stage: &str) -> Result<String> {
    let folder = crate::outputs::ensemble::ensemble_folder(out_dir, stage);
    Ok(
        match crate::outputs::ensemble::read_ensemble_result(&folder)? {
            Some(result) => {
                let test = &result.summary.test;
                format!(
                "{stage}: ensemble of {} runs tested: accuracy {:.4}, balanced accuracy {:.4}, \
                 AUC {:.4} ({})",
                result.members.len(),
                test.accuracy,
                test.balanced_accuracy,
                test.auc,
                result.members.join(", ")
            )
            }
            None => {
                format!("{stage}: ensemble not tested yet (tested once its members' stages finish)")
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_a_person_says_them() {
        assert_eq!(human_duration(Duration::from_secs(40)), "40 s");
        assert_eq!(human_duration(Duration::from_secs(100)), "2 min");
        assert_eq!(human_duration(Duration::from_secs(12 * 60 + 10)), "12 min");
        assert_eq!(
            human_duration(Duration::from_secs(3 * 3600 + 5 * 60)),
            "3 h 05 min"
        );
    }

    #[test]
    fn pace_is_the_mean_of_the_last_epochs_and_skips_a_half_written_row() {
        let dir = tempfile::tempdir().unwrap();
        let folder = RunFolder::at(dir.path());
        let header = "stage,run,epoch,train_loss,train_accuracy,val_loss,val_accuracy,seconds";
        let rows: String = (1..=7)
            .map(|epoch| format!("s,r,{epoch},1,0.5,1,0.5,{}\n", epoch as f64))
            .collect();
        std::fs::write(folder.epochs_csv(), format!("{header}\n{rows}s,r,8,0.9,0.")).unwrap();
        // Epochs 3 to 7 took 3..7 s: 5 s on average; the half row of epoch 8 is skipped.
        let pace = Pace::of(&folder).unwrap();
        assert_eq!(pace.seconds_per_epoch, 5.0);
        assert_eq!(pace.describe(24), "5.0 s/epoch, about 2 min left");
        std::fs::write(folder.epochs_csv(), format!("{header}\n")).unwrap();
        assert_eq!(Pace::of(&folder), None);
    }
}
