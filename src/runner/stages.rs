//! Runs a manifest's stages in order: plans them, opens their data, and for each stage
//! waits for the winners it starts from, attempts its runs (or races them rung by rung
//! under halving), and settles its winner. Bad input fails before anything is written
//! under out/.
//!
//! Several processes may share out/ (threads of `--jobs`, `--shard`ed processes, SLURM
//! array tasks): each run is claimed before it trains and skipped while another holds
//! it (`attempt`); summary rows are merged under a stage lock; a stage's winner is
//! written by the process that sees its last run finish, from the runs' results on
//! disk (`settle`).

use super::session::{dataset_for, given_up, names, Done, Hint, Session, Sharing, TrainSettings};
use super::settle::Settled;
use crate::cluster::fresh;
use crate::data::Datasets;
use crate::outputs::proposals::with_drawn;
use crate::outputs::run_folder::{StageFolder, FAILURES_BEFORE_GIVING_UP};
use crate::outputs::summary::RunSummary;
use crate::outputs::winners::{self, Winner};
use crate::runner::ensemble;
use crate::runner::progress::Progress;
use crate::runner::transfer::check_transfers;
use crate::storage::files::can_write_in;
use crate::study::ensemble::Ensemble;
use crate::study::manifest::{Manifest, Stage};
use crate::study::plan::{self, RunId, StagePlan};
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::sync::Mutex;
use std::thread;

/// Runs the stages named in `only` (all when empty), in manifest order, and returns
/// the summaries of their runs.
pub fn run(
    manifest: &Manifest,
    only: &[String],
    settings: &TrainSettings,
) -> Result<Vec<RunSummary>> {
    run_shared(manifest, only, settings, &Sharing::default())
}

/// `run`, taking `sharing.shard` of each stage's runs, beside other processes. Returns
/// the summaries of the stages' finished runs, in plan order.
pub fn run_shared(
    manifest: &Manifest,
    only: &[String],
    settings: &TrainSettings,
    sharing: &Sharing,
) -> Result<Vec<RunSummary>> {
    let out = &settings.out_dir;
    let selected = plan::select(manifest, only)?;
    // Every stage is planned before anything trains, so a bad grid anywhere fails at once.
    let planned = winners::plan_with_recorded_winners(manifest, out)?;
    // Every data file is opened before anything is written, so a bad one fails first;
    // a stage's sources' too, whose winners may be settled from their runs' results.
    let mut datasets = Datasets::new(&settings.data_dir, settings.device);
    let needed = |name: &str| {
        selected
            .iter()
            .any(|stage| stage.name == name || stage.sources().any(|source| source == name))
    };
    for (plan, _) in planned.iter().filter(|(plan, _)| needed(&plan.name)) {
        for run in &plan.runs {
            datasets.open(&run.dataset)?;
        }
    }
    let mut session = Session {
        settings,
        sharing,
        progress: Progress::new(),
        winners: HashMap::new(),
        unsettled: HashMap::new(),
        fresh_since: None,
        given_up: Mutex::new(Vec::new()),
        hint: Hint::of(manifest, out),
    };
    let planned: HashMap<String, StagePlan> = planned
        .into_iter()
        .map(|(plan, _)| (plan.name.clone(), plan))
        .collect();
    session.settle_sources(&selected, &planned, &datasets)?;
    let winners = &session.winners;
    check_transfers(&planned, winners, &selected, &datasets, &session.hint)?;
    prepare_out_dir(out)?;
    let retraining = match settings.fresh {
        true => Some(fresh::join(out, sharing.claim_timeout)?),
        false => None,
    };
    session.fresh_since = retraining.as_ref().map(|retraining| retraining.since);
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    match settings.threads {
        Some(threads) => tch::set_num_threads(threads as i32),
        // Parallel runs share the cores: one libtorch thread pool per run's worth of them.
        None if settings.jobs > 1 => tch::set_num_threads((cores / settings.jobs).max(1) as i32),
        None => {}
    }

    let mut summaries = Vec::new();
    for stage in selected {
        summaries.extend(session.run_stage(manifest, stage, &datasets)?);
    }
    let given_up = session.given_up.into_inner().expect("no panic holds it");
    if !given_up.is_empty() {
        bail!(
            "not retried, each having failed {FAILURES_BEFORE_GIVING_UP} times in a row: {} \
             (`cellnets status` says why): fix the cause, then rerun with --retry-failed",
            given_up
                .iter()
                .map(RunId::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(summaries)
}

impl Session<'_> {
    /// The winners of the selected stages' sources that do not run in this invocation,
    /// settled before anything trains: the recorded winner when it was settled for the
    /// source as this manifest plans it, else one settled now from the source's own
    /// finished runs, else, for a `from` source that pins its winner, that pinned run
    /// untrained. Any other source is not settled, and the error names why.
    fn settle_sources(
        &mut self,
        selected: &[&Stage],
        planned: &HashMap<String, StagePlan>,
        datasets: &Datasets,
    ) -> Result<()> {
        let out = &self.settings.out_dir;
        for (i, stage) in selected.iter().enumerate() {
            for source in stage.sources() {
                let runs_first = selected[..i].iter().any(|earlier| earlier.name == source);
                if runs_first || self.winners.contains_key(source) {
                    continue;
                }
                let plan = &planned[source];
                let recorded = winners::recorded_winner(out, plan)?;
                let why_not = recorded.why_not(out, source);
                let winner = match recorded.current() {
                    Some(winner) => winner,
                    None => match self.settle(plan, datasets)? {
                        Settled::Winner(winner) => *winner,
                        Settled::NoWinner => bail!(
                            "stage `{}` needs the winner of stage `{source}`, whose runs all \
                             diverged at once: change its settings and run `{}`",
                            stage.name,
                            self.hint.only(&[source])
                        ),
                        Settled::Unfinished(_) if pins_what_it_needs(stage, plan) => {
                            Winner::pinned_untrained(plan)
                        }
                        Settled::Unfinished(runs) => bail!(
                            "stage `{}` needs the winner of stage `{source}`, which is not \
                             settled for this manifest ({why_not}; {} of its {} run(s) have \
                             no result: {}): run `{}` first, or both: `{}`",
                            stage.name,
                            runs.len(),
                            plan.runs.len(),
                            names(&runs),
                            self.hint.only(&[source]),
                            self.hint.only(&[source, &stage.name])
                        ),
                    },
                };
                self.winners.insert(source.to_string(), winner);
            }
        }
        Ok(())
    }
}

/// Whether `stage` needs of its source only what the manifest fixes: it starts `from`
/// a source that pins its winner, and takes no layers or members from it.
fn pins_what_it_needs(stage: &Stage, source: &StagePlan) -> bool {
    let takes_layers = stage
        .transfer
        .as_ref()
        .is_some_and(|transfer| transfer.from == source.name);
    source.pinned_winner.is_some()
        && stage.from.as_deref() == Some(source.name.as_str())
        && !takes_layers
}

fn prepare_out_dir(dir: &Path) -> Result<()> {
    let fix = "choose another folder with --out, or make it writable";
    fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the output folder {}: {fix}", dir.display()))?;
    can_write_in(dir).with_context(|| {
        format!(
            "cannot write into the output folder {}: {fix}",
            dir.display()
        )
    })
}

impl Session<'_> {
    fn run_stage(
        &mut self,
        manifest: &Manifest,
        stage: &Stage,
        datasets: &Datasets,
    ) -> Result<Vec<RunSummary>> {
        if let Some(ensemble) = &stage.ensemble {
            return self.run_ensemble(manifest, &stage.name, ensemble, datasets);
        }
        let transfer = stage.transfer.as_ref().map(|transfer| &transfer.from);
        for source in stage.from.iter().chain(transfer) {
            let winner = self.winner_or_wait(source, datasets)?;
            self.winners.insert(source.clone(), winner);
        }
        let start = stage
            .from
            .as_ref()
            .map(|source| self.winners[source].plan.clone());
        let plan = plan::plan_stage(manifest, stage, start.as_ref())
            .with_context(|| format!("stage `{}`", stage.name))?;
        let out = &self.settings.out_dir;
        StageFolder::new(out, &plan.name).create()?;
        let mine = self.my_share(&plan.runs);
        let share = match &plan.proposals {
            Some(proposals) => (0..proposals.count)
                .filter(|&position| self.sharing.shard.takes(position))
                .count(),
            None => mine.len(),
        };
        self.progress.start_stage(&plan.name, share);
        let done = match (&plan.halving, &plan.proposals) {
            (Some(rungs), _) => self.run_halving(&plan, rungs, datasets)?,
            (None, Some(_)) => self.run_proposals(&plan, datasets)?,
            (None, None) => mine
                .iter()
                .cloned()
                .zip(self.run_all(&mine, datasets)?)
                .collect(),
        };
        // A TPE stage's runs are those drawn by now, by this process or others.
        let plan = with_drawn(out, &plan)?;
        for (run, done) in &done {
            match done {
                Done::Held(holder) => self.progress.note(&format!(
                    "{}: {} trains it; skipped",
                    run.id(),
                    holder.describe()
                )),
                Done::Lost(lost) => self.progress.note(&format!("{lost}")),
                Done::GaveUp(failure) => {
                    self.progress.note(&given_up(run, failure));
                    self.given_up
                        .lock()
                        .expect("no panic holds it")
                        .push(run.id());
                }
                Done::Finished | Done::Paused => {}
            }
        }
        self.progress.finish_stage();
        match self.settle(&plan, datasets)? {
            Settled::Winner(winner) => {
                self.winners.insert(plan.name.clone(), *winner);
            }
            Settled::NoWinner => {}
            Settled::Unfinished(runs) => {
                self.progress.note(&format!(
                    "stage {}: {} run(s) of other processes not finished yet ({}); the process \
                     that finishes the last one writes the winner",
                    plan.name,
                    runs.len(),
                    names(&runs)
                ));
                self.unsettled.insert(plan.name.clone(), plan.clone());
            }
        }
        self.finished_summaries(&plan, datasets)
    }

    /// Tests an ensemble stage once its members' stages have finished (waiting for
    /// other processes' runs as a `from` stage does); the process whose shard takes a
    /// stage's first run does it. Reruns re-test it: that takes seconds, and members
    /// may have been retrained.
    fn run_ensemble(
        &mut self,
        manifest: &Manifest,
        stage: &str,
        ensemble: &Ensemble,
        datasets: &Datasets,
    ) -> Result<Vec<RunSummary>> {
        for source in ensemble.stages() {
            let winner = self.winner_or_wait(source, datasets)?;
            self.winners.insert(source.to_string(), winner);
        }
        if !self.sharing.shard.takes(0) {
            return Ok(Vec::new());
        }
        let out = &self.settings.out_dir;
        let plans = winners::plan_with_recorded_winners(manifest, out)?;
        let plans: Vec<StagePlan> = plans.into_iter().map(|(plan, _)| plan).collect();
        let finished = |run: &_| self.result_of(run, dataset_for(datasets, run));
        let members = ensemble::members(stage, ensemble, &plans, finished, &self.hint)?;
        let data = dataset_for(datasets, &members[0].0);
        StageFolder::new(out, stage).create()?;
        let summary = ensemble::evaluate(out, stage, &members, data, self.settings.device)
            .with_context(|| format!("stage `{stage}`"))?;
        self.record_row(&summary)?;
        let test = &summary.test;
        self.progress.note(&format!(
            "stage {stage}: the mean of {} runs' probabilities: test accuracy {:.4}, balanced \
             accuracy {:.4}, AUC {:.4} ({:.0} s)",
            members.len(),
            test.accuracy,
            test.balanced_accuracy,
            test.auc,
            summary.seconds
        ));
        Ok(vec![summary])
    }

    /// The summaries of the stage's runs that have finished, in plan order.
    fn finished_summaries(&self, plan: &StagePlan, datasets: &Datasets) -> Result<Vec<RunSummary>> {
        let mut summaries = Vec::new();
        for run in &plan.runs {
            if let Some(finished) = self.result_of(run, dataset_for(datasets, run))? {
                summaries.push(finished);
            }
        }
        Ok(summaries)
    }
}
