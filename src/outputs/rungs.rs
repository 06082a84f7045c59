//! A halving stage's runs as their folders show them: how far each has trained and
//! its committed epochs, handed to the promotion rule (`study::search::rungs`). Every
//! decision is a function of the committed epochs alone, so the processes sharing out/
//! (and `cellnets status`, and the report) reach the same ones without talking.

use crate::outputs::run_folder::RunFolder;
use crate::outputs::winners::ranking_monitor;
use crate::study::manifest::Monitor;
use crate::study::plan::RunPlan;
use crate::study::search::rungs::{self, Contender, Rungs, Standing};
use crate::train::{monitored, BestEpoch, EpochRecord, Outcome};
use anyhow::Result;
use std::path::Path;
use std::time::SystemTime;

/// One run of a halving stage as its folder shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stand {
    /// Epochs committed: its resume point's last, else its result's.
    pub trained: usize,
    /// The outcome of its result, when one of its settings is committed.
    pub result: Option<Outcome>,
    /// Its committed epochs, in order.
    pub records: Vec<EpochRecord>,
    /// The run's own monitor, which picks its best epoch.
    pub monitor: Monitor,
}

impl Stand {
    /// Reads `run`'s folder under `out_dir`, for data of `data_md5` (any data when
    /// none: each file then counts for the data it names); under `--fresh`, only what
    /// was committed `since` the retraining began.
    pub fn read(
        out_dir: &Path,
        run: &RunPlan,
        data_md5: Option<&str>,
        since: Option<SystemTime>,
    ) -> Result<Stand> {
        let folder = RunFolder::of(out_dir, run);
        let result = folder
            .read_result()
            .ok()
            .flatten()
            .filter(|_| folder.finished_since(since))
            .filter(|result| result.is_run_of(run, data_md5.unwrap_or(&result.data_md5)));
        let resumed = folder
            .peek_resume()
            .ok()
            .flatten()
            .map(|(state, _)| state)
            .filter(|_| folder.resumable_since(since))
            .filter(|state| state.continues_as(run, data_md5.unwrap_or(&state.data_md5)));
        let trained = match (&resumed, &result) {
            (Some(state), _) => state.point.last.epoch,
            (None, Some(result)) => result.summary.epochs,
            (None, None) => 0,
        };
        let records = match trained {
            0 => Vec::new(),
            _ => folder.read_epochs().unwrap_or_default(),
        };
        Ok(Stand {
            trained,
            result: result.map(|result| result.summary.status),
            records: records
                .into_iter()
                .filter(|record| record.epoch <= trained)
                .collect(),
            monitor: run.training.monitor,
        })
    }

    /// A run not started (a TPE stage's proposal not drawn yet).
    pub fn untrained(run: &RunPlan) -> Stand {
        Stand {
            trained: 0,
            result: None,
            records: Vec::new(),
            monitor: run.training.monitor,
        }
    }

    /// It trains no more: it finished its budget, stopped early or diverged.
    pub fn ended(&self) -> bool {
        matches!(
            self.result,
            Some(Outcome::Finished | Outcome::StoppedEarly | Outcome::Diverged)
        )
    }

    /// The value it is ranked by after its first `epochs` epochs: its best epoch among
    /// them by its monitor, valued by `ranking` (as a stage's winner is chosen); not a
    /// number when none is usable.
    pub fn value_at(&self, epochs: usize, ranking: Monitor) -> f64 {
        let mut best = BestEpoch::new(self.monitor);
        for record in self.records.iter().filter(|record| record.epoch <= epochs) {
            best.offer(record);
        }
        best.record()
            .map_or(f64::NAN, |record| monitored(ranking, record))
    }
}

/// Reads every run of a halving stage; `md5` gives each run's data checksum, when
/// known; `since` is when a `--fresh` retraining began.
pub fn read_stands(
    out_dir: &Path,
    runs: &[RunPlan],
    md5: impl Fn(&RunPlan) -> Option<String>,
    since: Option<SystemTime>,
) -> Result<Vec<Stand>> {
    runs.iter()
        .map(|run| Stand::read(out_dir, run, md5(run).as_deref(), since))
        .collect()
}

/// Where the stage stands: the promotion rule over its runs' stands, each valued as
/// the stage's winner is chosen. `settled_elsewhere`: no process trains any of its
/// runs now (see `rungs::standing`).
pub fn standing(
    rungs: &Rungs,
    runs: &[RunPlan],
    stands: &[Stand],
    settled_elsewhere: bool,
) -> Standing {
    let ranking = ranking_monitor(runs.iter());
    let ranked: Vec<Ranked> = stands
        .iter()
        .map(|stand| Ranked { stand, ranking })
        .collect();
    rungs::standing(rungs, &ranked, settled_elsewhere)
}

/// A stand valued by the stage's ranking monitor.
struct Ranked<'a> {
    stand: &'a Stand,
    ranking: Monitor,
}

impl Contender for Ranked<'_> {
    fn trained(&self) -> usize {
        self.stand.trained
    }

    fn ended(&self) -> bool {
        self.stand.ended()
    }

    fn halted(&self) -> bool {
        self.stand.result == Some(Outcome::Halted)
    }

    fn value_at(&self, epochs: usize) -> f64 {
        self.stand.value_at(epochs, self.ranking)
    }
}
