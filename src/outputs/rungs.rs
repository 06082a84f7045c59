//! Where a halving stage stands, read from its runs' folders: how far each run has
//! trained, its value at each rung, the rungs' decisions (synchronous and ASHA) and
//! what may happen next. Every decision is a function of the committed epochs alone, so
//! the processes sharing out/ (and `cellnets status`, and the report) reach the same
//! ones without talking.

use crate::outputs::run_folder::RunFolder;
use crate::outputs::winners::ranking_monitor;
use crate::study::manifest::Monitor;
use crate::study::plan::{RunPlan, Rungs};
use crate::study::search::{best_positions, HalvingMode};
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

/// Something a process may do for a halving stage now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Train the run at `position` until epoch `until` (pausing there below the budget).
    Train { position: usize, until: usize },
    /// Commit the run at `position` as halted where it stands.
    Halt { position: usize },
}

impl Step {
    pub fn position(&self) -> usize {
        match *self {
            Step::Train { position, .. } | Step::Halt { position } => position,
        }
    }
}

/// A rung's outcome so far: who reached it with what value, and who went on.
#[derive(Debug, Clone, PartialEq)]
pub struct RungView {
    pub epoch: usize,
    /// (position, value at the rung) of the runs that reached it, in plan order.
    pub reached: Vec<(usize, f64)>,
    /// Positions of the runs that go on (sync: decided; async: promoted so far).
    pub promoted: Vec<usize>,
    /// Whether the rung has decided (sync: every run it waits for reached it).
    pub decided: bool,
}

/// A halving stage's state and what may happen next.
#[derive(Debug, Clone, PartialEq)]
pub struct Standing {
    pub rungs: Vec<RungView>,
    /// Steps ready now, the most useful first.
    pub steps: Vec<Step>,
    /// Positions of runs paused at a rung that has not promoted them (yet).
    pub waiting: Vec<usize>,
    /// Positions of runs halted, or to be halted.
    pub halted: Vec<usize>,
}

impl Standing {
    /// Every run is settled: nothing to train or halt, none waiting.
    pub fn done(&self) -> bool {
        self.steps.is_empty() && self.waiting.is_empty()
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

/// Where the stage stands. `settled_elsewhere` says that no process trains any of its
/// runs now: under ASHA the runs still waiting then are halted, since no run can
/// arrive at their rungs any more.
pub fn standing(
    rungs: &Rungs,
    runs: &[RunPlan],
    stands: &[Stand],
    settled_elsewhere: bool,
) -> Standing {
    let ranking = ranking_monitor(runs.iter());
    match rungs.halving.mode {
        HalvingMode::Sync => synchronous(rungs, stands, ranking),
        HalvingMode::Async => asynchronous(rungs, stands, ranking, settled_elsewhere),
    }
}

impl Standing {
    fn empty() -> Standing {
        Standing {
            rungs: Vec::new(),
            steps: Vec::new(),
            waiting: Vec::new(),
            halted: Vec::new(),
        }
    }

    /// Halts `position` (a step, unless its halted result is committed already).
    fn halt(&mut self, position: usize, stand: &Stand) {
        self.halted.push(position);
        if stand.result != Some(Outcome::Halted) {
            self.steps.push(Step::Halt { position });
        }
    }

    fn train(&mut self, positions: &[usize], until: usize) {
        let steps = positions
            .iter()
            .map(|&position| Step::Train { position, until });
        self.steps.extend(steps);
    }
}

/// Each rung decides once every run it promoted from the rung before has reached it
/// (or ended before it); then the best ceil(n/K) of the n that reached it and can
/// still train go on, and the rest are halted. The last rung, the budget, only trains
/// its runs to the end.
fn synchronous(rungs: &Rungs, stands: &[Stand], ranking: Monitor) -> Standing {
    let mut standing = Standing::empty();
    let mut participants: Vec<usize> = (0..stands.len()).collect();
    for &rung in &rungs.epochs {
        // A run that ended before the rung leaves without taking a place.
        let (reached, pending): (Vec<usize>, Vec<usize>) = participants
            .iter()
            .filter(|&&position| !(stands[position].ended() && stands[position].trained < rung))
            .partition(|&&position| stands[position].trained >= rung);
        let reached: Vec<(usize, f64)> = reached
            .into_iter()
            .map(|position| (position, stands[position].value_at(rung, ranking)))
            .collect();
        let mut view = RungView {
            epoch: rung,
            reached,
            promoted: Vec::new(),
            decided: pending.is_empty(),
        };
        standing.train(&pending, rung);
        if rung == rungs.budget() {
            // Trained to the end, its result not yet committed.
            let uncommitted: Vec<usize> = view
                .reached
                .iter()
                .map(|&(position, _)| position)
                .filter(|&position| !stands[position].result.is_some_and(is_final))
                .collect();
            standing.train(&uncommitted, rung);
        } else if !view.decided {
            let waiting = view.reached.iter().map(|&(position, _)| position);
            standing
                .waiting
                .extend(waiting.filter(|&position| !stands[position].ended()));
        } else {
            // A run that ended at the rung (early stopping) trains no more: it takes no
            // place. One that ended later went on from here.
            let ended_here = |position: usize| {
                let stand = &stands[position];
                stand.ended() && stand.trained <= rung
            };
            let alive: Vec<(usize, f64)> = view
                .reached
                .iter()
                .filter(|&&(position, _)| !ended_here(position))
                .copied()
                .collect();
            view.promoted = best_positions(&alive, rungs.halving.keeps(alive.len()));
            view.promoted.sort_unstable();
            for &(position, _) in &alive {
                if !view.promoted.contains(&position) {
                    standing.halt(position, &stands[position]);
                }
            }
            participants = view.promoted.clone();
        }
        let decided = view.decided;
        standing.rungs.push(view);
        if !decided || rung == rungs.budget() {
            break;
        }
    }
    standing
}

/// ASHA: a run paused at a rung goes on as soon as it is among the best ceil(n/K) of
/// the n runs that have reached that rung so far; promotions are never taken back.
/// Promotions come first (the highest rung first), then runs cut short between rungs,
/// then runs not started; once nothing is left to train and no process trains any run
/// (`settled_elsewhere`), the runs still waiting are halted.
fn asynchronous(
    rungs: &Rungs,
    stands: &[Stand],
    ranking: Monitor,
    settled_elsewhere: bool,
) -> Standing {
    let mut standing = Standing::empty();
    let budget = rungs.budget();
    let mut promotions = Vec::new();
    for (index, &rung) in rungs.epochs.iter().enumerate() {
        let reached: Vec<(usize, f64)> = (0..stands.len())
            .filter(|&position| stands[position].trained >= rung)
            .map(|position| (position, stands[position].value_at(rung, ranking)))
            .collect();
        let best = best_positions(&reached, rungs.halving.keeps(reached.len()));
        let mut view = RungView {
            epoch: rung,
            reached,
            promoted: Vec::new(),
            decided: rung == budget,
        };
        for &(position, _) in view.reached.iter().filter(|_| rung < budget) {
            let stand = &stands[position];
            let paused_here = stand.trained == rung && !stand.ended();
            if stand.trained > rung || paused_here && best.contains(&position) {
                view.promoted.push(position);
            }
            if paused_here && best.contains(&position) {
                promotions.push((index, position, rungs.epochs[index + 1]));
            } else if paused_here {
                standing.waiting.push(position);
            }
        }
        standing.rungs.push(view);
    }
    // The highest rung's promotions first: they are nearest to a finished run.
    promotions.sort_by_key(|&(index, position, _)| (std::cmp::Reverse(index), position));
    for (_, position, until) in promotions {
        standing.train(&[position], until);
    }
    let unpaused = |stand: &Stand| {
        !stand.ended() && (stand.trained == budget || !rungs.epochs.contains(&stand.trained))
    };
    let (started, unstarted): (Vec<usize>, Vec<usize>) = (0..stands.len())
        .filter(|&position| unpaused(&stands[position]))
        .partition(|&position| stands[position].trained > 0);
    for position in started {
        let until = rungs.next_after(stands[position].trained).unwrap_or(budget);
        standing.train(&[position], until);
    }
    standing.train(&unstarted, rungs.epochs[0]);
    if standing.steps.is_empty() && settled_elsewhere {
        for position in std::mem::take(&mut standing.waiting) {
            standing.halt(position, &stands[position]);
        }
    } else {
        // Halted before, waiting again: a later arrival may still promote it.
        let halted_before = |&&position: &&usize| stands[position].result == Some(Outcome::Halted);
        standing.halted = standing
            .waiting
            .iter()
            .filter(halted_before)
            .copied()
            .collect();
    }
    standing
}

/// An outcome after which a run at its budget has nothing left to commit.
fn is_final(outcome: Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Finished | Outcome::StoppedEarly | Outcome::Diverged
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::study::search::Halving;

    fn record(epoch: usize, val_accuracy: f64) -> EpochRecord {
        EpochRecord {
            epoch,
            train_loss: 1.0,
            train_accuracy: 0.5,
            val_loss: 1.0 - val_accuracy,
            val_accuracy,
            seconds: 1.0,
            val_auc: 0.5,
            val_balanced_accuracy: 0.5,
        }
    }

    /// A run that trained `trained` epochs with val accuracy `slope * epoch`.
    fn stand(trained: usize, slope: f64, result: Option<Outcome>) -> Stand {
        Stand {
            trained,
            result,
            records: (1..=trained).map(|e| record(e, slope * e as f64)).collect(),
            monitor: Monitor::ValAccuracy,
        }
    }

    fn rungs(mode: HalvingMode) -> Rungs {
        let halving = Halving {
            min_epochs: 1,
            reduction: 3,
            mode,
        };
        Rungs {
            epochs: halving.rungs(9).unwrap(),
            halving,
        }
    }

    #[test]
    fn a_synchronous_rung_waits_for_every_run_then_keeps_the_best_third() {
        let rungs = rungs(HalvingMode::Sync);
        let slopes = [0.01, 0.05, 0.02, 0.04, 0.03, 0.06];
        let mut stands: Vec<Stand> = slopes.iter().map(|&s| stand(0, s, None)).collect();
        let at = |stands: &[Stand]| standing(&rungs, &[], stands, false);
        let first = at(&stands);
        assert_eq!(first.steps.len(), 6);
        assert!(first.steps.contains(&Step::Train {
            position: 3,
            until: 1
        }));
        for (i, s) in slopes.iter().enumerate().take(5) {
            stands[i] = stand(1, *s, None);
        }
        let waiting = at(&stands);
        assert_eq!(
            waiting.steps,
            [Step::Train {
                position: 5,
                until: 1
            }]
        );
        assert_eq!(waiting.waiting, [0, 1, 2, 3, 4]);
        stands[5] = stand(1, 0.06, None);
        let decided = at(&stands);
        assert_eq!(decided.rungs[0].promoted, [1, 5]);
        assert_eq!(decided.halted, [0, 2, 3, 4]);
        assert!(decided.steps.contains(&Step::Train {
            position: 5,
            until: 3
        }));
        assert!(decided.steps.contains(&Step::Halt { position: 0 }));
        for position in [0, 2, 3, 4] {
            stands[position].result = Some(Outcome::Halted);
        }
        stands[1] = stand(3, 0.05, None);
        stands[5] = stand(3, 0.06, None);
        let last = at(&stands);
        // ceil(2 / 3) = 1 goes on to the budget.
        assert_eq!(last.rungs[1].promoted, [5]);
        assert_eq!(last.halted, [0, 2, 3, 4, 1]);
        assert_eq!(
            last.steps,
            [
                Step::Halt { position: 1 },
                Step::Train {
                    position: 5,
                    until: 9
                }
            ]
        );
        stands[1].result = Some(Outcome::Halted);
        stands[5] = stand(9, 0.06, Some(Outcome::Finished));
        assert!(at(&stands).done());
    }

    #[test]
    fn a_run_that_stopped_early_takes_no_place_at_the_rung() {
        let rungs = rungs(HalvingMode::Sync);
        let stands = vec![
            stand(1, 0.9, Some(Outcome::StoppedEarly)),
            stand(1, 0.1, None),
            stand(1, 0.2, None),
            stand(1, 0.3, None),
            stand(1, 0.4, None),
        ];
        let standing = standing(&rungs, &[], &stands, false);
        // It ranks first but trains no more: the 4 others share ceil(4/3) = 2 places.
        assert_eq!(standing.rungs[0].promoted, [3, 4]);
        assert_eq!(standing.halted, [1, 2]);
        assert_eq!(standing.rungs[0].reached.len(), 5);
    }

    #[test]
    fn asha_promotes_the_best_third_so_far_and_halts_the_rest_once_nothing_trains() {
        let rungs = rungs(HalvingMode::Async);
        let mut stands = vec![
            stand(1, 0.05, None),
            stand(1, 0.01, None),
            stand(0, 0.02, None),
        ];
        let now = standing(&rungs, &[], &stands, false);
        // ceil(2/3) = 1: run 0 goes on first; run 2 starts; run 1 waits.
        assert_eq!(
            now.steps,
            [
                Step::Train {
                    position: 0,
                    until: 3
                },
                Step::Train {
                    position: 2,
                    until: 1
                }
            ]
        );
        assert_eq!(now.waiting, [1]);
        stands[0] = stand(9, 0.05, Some(Outcome::Finished));
        stands[2] = stand(1, 0.02, None);
        // ceil(3/3) = 1 at rung 1: run 0 already went on; runs 1 and 2 wait.
        let waiting = standing(&rungs, &[], &stands, false);
        assert!(waiting.steps.is_empty());
        assert_eq!(waiting.waiting, [1, 2]);
        let settled = standing(&rungs, &[], &stands, true);
        assert_eq!(
            settled.steps,
            [Step::Halt { position: 1 }, Step::Halt { position: 2 }]
        );
        assert_eq!(settled.halted, [1, 2]);
    }
}
