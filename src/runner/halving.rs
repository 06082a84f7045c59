//! A halving stage's runs, rung by rung: its workers claim the next (run, rung) step,
//! wait or leave. Each worker (a `--jobs` thread, a `--shard`ed process, a SLURM task)
//! reads where the stage stands from its runs' folders, takes the next step it may
//! (train a run to its next rung, or halt one a rung left behind), claims that run for
//! it, and reads again. With nothing to take, a worker of a synchronous stage waits for
//! the rung others are finishing; under ASHA it stops, and whoever trains last finishes
//! the stage. A TPE stage's runs are proposed as workers reach them (BOHB).

use super::session::{dataset_for, given_up, names, on_workers, trained_by, Done, Goal, Session};
use crate::data::Datasets;
use crate::outputs::proposals::{drawn_runs, read_proposals};
use crate::outputs::rungs::{read_stands, standing, Stand};
use crate::study::plan::{RunPlan, StagePlan};
use crate::study::search::rungs::{Rungs, Standing, Step};
use crate::study::search::HalvingMode;
use anyhow::{bail, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

impl Session<'_> {
    /// Works on a halving stage with `--jobs` workers until nothing is left that this
    /// process may do; returns what became of each run it took, step by step.
    pub(super) fn run_halving(
        &self,
        plan: &StagePlan,
        rungs: &Rungs,
        datasets: &Datasets,
    ) -> Result<Vec<(RunPlan, Done)>> {
        let count = plan.proposals.as_ref().map_or(plan.runs.len(), |p| p.count);
        let workers = self.settings.jobs.clamp(1, count);
        on_workers(workers, datasets, |own, failed| {
            self.halving_worker(plan, rungs, own, failed)
        })
    }

    fn halving_worker(
        &self,
        plan: &StagePlan,
        rungs: &Rungs,
        datasets: &Datasets,
        failed: &AtomicBool,
    ) -> Result<Vec<(RunPlan, Done)>> {
        let timeout = self.sharing.claim_timeout;
        let poll = (timeout / 20).clamp(Duration::from_millis(200), Duration::from_secs(5));
        let mut done = Vec::new();
        let mut last_live = Instant::now();
        let mut last_note: Option<Instant> = None;
        while !failed.load(Ordering::Relaxed) {
            crate::train::stop::check()?;
            let (standing, runs) = self.standing(plan, rungs, datasets)?;
            if standing.done() {
                break;
            }
            if let Some(outcome) = self.take_step(plan, &runs, &standing, datasets)? {
                done.push(outcome);
                continue;
            }
            if rungs.halving.mode == HalvingMode::Async {
                // The runs others train will reach their rungs and go on from there.
                break;
            }
            // A proposal not drawn yet has no run to name or hold.
            let open: Vec<RunPlan> = standing
                .steps
                .iter()
                .filter_map(|step| runs.get(step.position()).cloned())
                .collect();
            let holders = self.live_holders(&open)?;
            if !holders.is_empty() && self.sharing.leave_when_idle {
                break;
            } else if !holders.is_empty() {
                last_live = Instant::now();
            } else if last_live.elapsed() > timeout {
                bail!(
                    "stage `{}`: runs {} have not reached their rung and no process has \
                     trained them for {} s: run them (`{}`, with the --shard that takes \
                     them), then rerun this",
                    plan.name,
                    names(&open),
                    timeout.as_secs(),
                    self.hint.only(&[&plan.name])
                );
            }
            if last_note.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
                let rung = standing.rungs.last().map_or(0, |rung| rung.epoch);
                self.progress.note(&format!(
                    "stage {}: waiting for the rung at epoch {rung}: {} run(s) to reach it \
                     ({}){}",
                    plan.name,
                    open.len(),
                    names(&open),
                    trained_by(&holders)
                ));
                last_note = Some(Instant::now());
            }
            thread::sleep(poll);
        }
        Ok(done)
    }

    /// Where the stage stands, and its runs (a TPE stage's drawn so far, its positions
    /// beyond them not started); under ASHA, with the runs still waiting halted once no
    /// process trains any run of the stage.
    fn standing(
        &self,
        plan: &StagePlan,
        rungs: &Rungs,
        datasets: &Datasets,
    ) -> Result<(Standing, Vec<RunPlan>)> {
        let out = &self.settings.out_dir;
        let runs = match &plan.proposals {
            Some(_) => drawn_runs(plan, &read_proposals(out, plan)?)?,
            None => plan.runs.clone(),
        };
        let md5 = |run: &RunPlan| Some(dataset_for(datasets, run).md5.clone());
        let mut stands = read_stands(out, &runs, md5, self.fresh_since)?;
        if let Some(proposals) = &plan.proposals {
            stands.resize(proposals.count, Stand::untrained(&plan.runs[0]));
        }
        // The ranking monitor of a TPE stage with nothing drawn: its first proposal's.
        let ranked = if runs.is_empty() { &plan.runs } else { &runs };
        let standing = standing(rungs, ranked, &stands, false);
        if rungs.halving.mode == HalvingMode::Sync || !standing.steps.is_empty() {
            return Ok((standing, runs));
        }
        let unended: Vec<RunPlan> = runs
            .iter()
            .zip(&stands)
            .filter(|(_, stand)| !stand.ended())
            .map(|(run, _)| run.clone())
            .collect();
        let settled = self.live_holders(&unended)?.is_empty();
        Ok((self::standing(rungs, ranked, &stands, settled), runs))
    }

    /// Takes the first step of this process's share that no one else holds; none when
    /// there is none.
    fn take_step(
        &self,
        plan: &StagePlan,
        runs: &[RunPlan],
        standing: &Standing,
        datasets: &Datasets,
    ) -> Result<Option<(RunPlan, Done)>> {
        let mine = standing
            .steps
            .iter()
            .filter(|step| self.sharing.shard.takes(step.position()));
        for step in mine {
            // A TPE stage's next run is proposed when a worker is about to train it.
            let proposed;
            let run = match runs.get(step.position()) {
                Some(run) => run,
                None => {
                    proposed = self.proposal(plan, step.position(), datasets)?;
                    &proposed
                }
            };
            let goal = match *step {
                Step::Train { until, .. } => Goal::Rung { until },
                Step::Halt { .. } => Goal::Halt,
            };
            match self.attempt(run, dataset_for(datasets, run), goal)? {
                Done::Held(_) => continue,
                Done::GaveUp(failure) => {
                    let why = given_up(run, &failure);
                    if plan.halving.as_ref().map(|rungs| rungs.halving.mode)
                        == Some(HalvingMode::Sync)
                    {
                        bail!("stage `{}`: its rung cannot decide: {why}", plan.name);
                    }
                    let mut skipped = self.given_up.lock().expect("no panic holds it");
                    if !skipped.contains(&run.id()) {
                        self.progress.note(&why);
                        skipped.push(run.id());
                    }
                    continue;
                }
                outcome => return Ok(Some((run.clone(), outcome))),
            }
        }
        Ok(None)
    }
}
