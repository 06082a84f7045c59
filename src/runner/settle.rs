//! A stage's winner: settled from the results on disk once every run has finished,
//! whichever process finished them, or waited for while other processes still train
//! its runs.

use super::session::{dataset_for, given_up, names, trained_by, Session};
use crate::cluster::file_lock::with_lock;
use crate::data::Datasets;
use crate::outputs::proposals::{all_drawn, with_drawn};
use crate::outputs::run_folder::StageFolder;
use crate::outputs::winners::{self, write_winner, Winner};
use crate::study::plan::{RunPlan, StagePlan};
use anyhow::{bail, Result};
use std::thread;
use std::time::{Duration, Instant};

/// A stage's runs as the files under out/ show them.
pub(super) enum Settled {
    Winner(Box<Winner>),
    /// Every run finished, none with a usable checkpoint.
    NoWinner,
    /// Runs without a result yet.
    Unfinished(Vec<RunPlan>),
}

impl Session<'_> {
    /// Writes the stage's winner when all its runs have finished, whichever process
    /// finished them: the winner is a function of the results on disk, so processes
    /// that see the same results write the same file, under the stage's lock.
    pub(super) fn settle(&self, plan: &StagePlan, datasets: &Datasets) -> Result<Settled> {
        let plan = &with_drawn(&self.settings.out_dir, plan)?;
        let mut finished = Vec::new();
        let mut unfinished = Vec::new();
        for run in &plan.runs {
            match self.result_of(run, dataset_for(datasets, run))? {
                Some(summary) => finished.push((run.clone(), summary)),
                None => unfinished.push(run.clone()),
            }
        }
        // A TPE stage is settled once its last proposal is drawn and has finished.
        if !unfinished.is_empty() || !all_drawn(plan) {
            return Ok(Settled::Unfinished(unfinished));
        }
        let Some(winner) = winners::choose_winner(plan, &finished) else {
            self.progress.note(&format!(
                "stage {}: no run has a usable checkpoint (each diverged at once), so no winner",
                plan.name
            ));
            return Ok(Settled::NoWinner);
        };
        let out = &self.settings.out_dir;
        with_lock(&StageFolder::new(out, &plan.name).lock(), || {
            write_winner(out, &plan.name, &winner)
        })?;
        let pinned = if winner.pinned {
            ", pinned by the manifest"
        } else {
            ""
        };
        self.progress.note(&match &winner.plan.repeat_of {
            Some(configuration) => format!(
                "stage {}: winner {configuration} (by its mean over its seeds{pinned}); its \
                 first seed, {}, stands for it",
                plan.name, winner.run
            ),
            None => format!(
                "stage {}: winner {} (best val accuracy {:.4}{pinned})",
                plan.name, winner.run, winner.best_val_accuracy
            ),
        });
        Ok(Settled::Winner(Box::new(winner)))
    }

    /// The winner of `stage`; when other processes still train its runs, waits for them
    /// (taking over this shard's runs whose holder died), and gives up once no live
    /// process has held any of them for the claim timeout.
    pub(super) fn winner_or_wait(&self, stage: &str, datasets: &Datasets) -> Result<Winner> {
        if let Some(winner) = self.winners.get(stage) {
            return Ok(winner.clone());
        }
        // A winner.yaml on disk may be an earlier study's: a stage run in this
        // invocation waits for its own runs.
        let Some(plan) = self.unsettled.get(stage) else {
            return self.winner(stage);
        };
        let timeout = self.sharing.claim_timeout;
        let poll = (timeout / 20).clamp(Duration::from_millis(200), Duration::from_secs(5));
        let mut last_live = Instant::now();
        let mut last_note: Option<Instant> = None;
        loop {
            crate::train::stop::check()?;
            let unfinished = match self.settle(plan, datasets)? {
                Settled::Winner(winner) => return Ok(*winner),
                Settled::NoWinner => bail!(
                    "stage `{stage}` has no winner: every run diverged at once; change its \
                     settings and rerun it"
                ),
                Settled::Unfinished(runs) => runs,
            };
            if let Some((run, failure)) = self.gave_up_on(&unfinished) {
                bail!(
                    "stage `{stage}` cannot finish: {}",
                    given_up(&run, &failure)
                );
            }
            match &plan.halving {
                Some(rungs) => {
                    self.run_halving(plan, rungs, datasets)?;
                }
                None if plan.proposals.is_some() => {
                    self.run_proposals(plan, datasets)?;
                }
                None => {
                    let mine: Vec<RunPlan> = self
                        .my_share(&plan.runs)
                        .into_iter()
                        .filter(|run| unfinished.iter().any(|other| other.name == run.name))
                        .collect();
                    self.run_all(&mine, datasets)?;
                }
            }
            let holders = self.live_holders(&unfinished)?;
            if !holders.is_empty() {
                last_live = Instant::now();
            } else if last_live.elapsed() > timeout {
                bail!(
                    "stage `{stage}`: runs {} have not finished and no process has trained them \
                     for {} s: run them (`{}`, with the --shard that takes them), then rerun \
                     this",
                    names(&unfinished),
                    timeout.as_secs(),
                    self.hint.only(&[stage])
                );
            }
            if last_note.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
                self.progress.note(&format!(
                    "waiting for stage {stage}: {} run(s) not finished ({}){}",
                    unfinished.len(),
                    names(&unfinished),
                    trained_by(&holders)
                ));
                last_note = Some(Instant::now());
            }
            thread::sleep(poll);
        }
    }
}
