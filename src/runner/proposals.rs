//! A TPE stage's runs: each configuration proposed from the results on disk when it is
//! drawn, under a lock that makes drawing one step among all processes and threads,
//! written before its run trains, then claimed and trained like any run. Proposals are
//! drawn in order, by whichever worker needs one first; a worker's share (`--shard`) is
//! of the proposals' positions, as of a grid's runs.
//!
//! With one worker, proposal k is drawn after runs 0..k-1 finished, so it sees exactly
//! their results: the same seed proposes the same configurations on every machine.
//! With several, the runs still training when a proposal is drawn are pending, and TPE
//! counts them as bad (Optuna's constant liar).

use super::session::{dataset_for, on_workers, Done, Goal, Session};
use crate::cluster::file_lock::with_lock;
use crate::data::Datasets;
use crate::outputs::proposals::{
    draw_lock, drawn_runs, proposals_dir, read_proposals, write_proposal, ProposalRecord, Seen,
};
use crate::outputs::rungs::Stand;
use crate::outputs::winners::ranking_monitor;
use crate::study::plan::{Proposals, RunPlan, StagePlan};
use crate::study::search::tpe::{self, Observation};
use anyhow::{Context, Result};
use std::sync::atomic::{AtomicUsize, Ordering};

impl Session<'_> {
    /// Works through this process's share of a TPE stage's proposals (no halving),
    /// `--jobs` at a time: each drawn when a worker reaches it, then trained.
    pub(super) fn run_proposals(
        &self,
        plan: &StagePlan,
        datasets: &Datasets,
    ) -> Result<Vec<(RunPlan, Done)>> {
        let proposals = plan.proposals.as_ref().expect("a TPE stage");
        let positions: Vec<usize> = (0..proposals.count)
            .filter(|&position| self.sharing.shard.takes(position))
            .collect();
        let next = AtomicUsize::new(0);
        let workers = self.settings.jobs.clamp(1, positions.len().max(1));
        on_workers(workers, datasets, |datasets, failed| {
            let mut done = Vec::new();
            while !failed.load(Ordering::Relaxed) {
                let Some(&position) = positions.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    break;
                };
                let run = self.proposal(plan, position, datasets)?;
                let outcome = self
                    .attempt(&run, dataset_for(datasets, &run), Goal::Whole)
                    .with_context(|| format!("run {} failed", run.id()))?;
                done.push((run, outcome));
            }
            Ok(done)
        })
    }

    /// The run of proposal `position`: read from out/ when drawn, else drawn now (with
    /// every proposal before it not yet drawn), under the stage's draw lock.
    pub(super) fn proposal(
        &self,
        plan: &StagePlan,
        position: usize,
        datasets: &Datasets,
    ) -> Result<RunPlan> {
        let out = &self.settings.out_dir;
        let proposals = plan.proposals.as_ref().expect("a TPE stage");
        let records = read_proposals(out, plan)?;
        if let Some(record) = records.get(position) {
            return proposals.run(position, &record.ordered_values(proposals)?);
        }
        let dir = proposals_dir(out, &plan.name, proposals);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        with_lock(&draw_lock(out, &plan.name, proposals), || {
            let mut records = read_proposals(out, plan)?;
            while records.len() <= position {
                let index = records.len();
                let (history, saw, rung) = self.history(plan, proposals, &records, datasets)?;
                let (values, drawn) = tpe::propose(
                    &proposals.space,
                    &proposals.settings,
                    proposals.seed,
                    index,
                    &history,
                );
                let run = proposals.run(index, &values)?;
                let record = ProposalRecord {
                    index,
                    run: run.name.clone(),
                    values: proposals
                        .space
                        .iter()
                        .zip(&values)
                        .map(|((key, _), value)| (key.as_str().into(), value.clone()))
                        .collect(),
                    drawn,
                    rung,
                    saw,
                };
                write_proposal(out, plan, &record, &run)?;
                self.progress
                    .note(&format!("{}: proposed {}", run.id(), record.describe()));
                records.push(record);
            }
            let record = &records[position];
            proposals.run(position, &record.ordered_values(proposals)?)
        })
    }

    /// What the next proposal sees of the proposals drawn so far (`records`, in order):
    /// each one's value by the stage's winner rule, or pending while it has no result;
    /// under halving, BOHB's: the values at the highest rung that enough runs reached
    /// (that rung's epoch returned), the runs still heading for it pending, and nothing
    /// when no rung has enough (the proposal is then drawn at random).
    fn history(
        &self,
        plan: &StagePlan,
        proposals: &Proposals,
        records: &[ProposalRecord],
        datasets: &Datasets,
    ) -> Result<(Vec<Observation>, Vec<Seen>, Option<usize>)> {
        let out = &self.settings.out_dir;
        let runs = drawn_runs(plan, records)?;
        let ranking = ranking_monitor(runs.iter());
        let mut stands = Vec::new();
        for run in &runs {
            let md5 = &dataset_for(datasets, run).md5;
            stands.push(Stand::read(out, run, Some(md5), self.fresh_since)?);
        }
        // Per run: its value, pending (Some(None)), or nothing at this rung (None).
        let at_rung = |epoch: usize| -> Vec<Option<Option<f64>>> {
            (stands.iter())
                .map(|stand| match (stand.trained >= epoch, &stand.result) {
                    (true, _) => Some(Some(stand.value_at(epoch, ranking))),
                    // Training, or waiting to: constant liar.
                    (false, None) => Some(None),
                    // Ended or halted below the rung: no result at it.
                    (false, Some(_)) => None,
                })
                .collect()
        };
        let (seen, rung) = match &plan.halving {
            None => {
                let seen = (runs.iter().zip(&stands))
                    .map(|(run, stand)| match stand.result {
                        Some(_) => Some(Some(stand.value_at(run.training.epochs, ranking))),
                        None => Some(None),
                    })
                    .collect();
                (seen, None)
            }
            Some(rungs) => {
                let reached: Vec<usize> = (rungs.epochs.iter())
                    .map(|&epoch| stands.iter().filter(|stand| stand.trained >= epoch).count())
                    .collect();
                match tpe::model_rung(&reached, &proposals.settings, proposals.space.len()) {
                    Some(rung) => {
                        let epoch = rungs.epochs[rung];
                        (at_rung(epoch), Some(epoch))
                    }
                    None => (vec![None; runs.len()], None),
                }
            }
        };
        let mut history = Vec::new();
        let mut saw = Vec::new();
        for ((run, record), seen) in runs.iter().zip(records).zip(seen) {
            let Some(score) = seen else { continue };
            history.push(Observation {
                values: record.ordered_values(proposals)?,
                score,
            });
            saw.push(Seen {
                run: run.name.clone(),
                value: score,
            });
        }
        Ok((history, saw, rung))
    }
}
