//! Progress on stderr, a callback of the loop: a bar over a stage's runs and one over
//! the current run's epochs with the latest metrics and an ETA; plain log lines when
//! stderr is not a terminal.

use crate::notes;
use crate::outputs::summary::RunSummary;
use crate::train::{Callback, EpochRecord};
use anyhow::Result;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

pub struct Progress {
    bars: Option<MultiProgress>,
    stage: ProgressBar,
    /// The bars print the library's notes (`crate::notes`) above themselves.
    _notes: Option<notes::Listening>,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    /// Bars on a terminal, log lines elsewhere (CI, `nohup`, a notebook's subprocess).
    pub fn new() -> Self {
        let bars = std::io::stderr()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        let _notes = bars.clone().map(|bars| {
            notes::listen(move |line| {
                let _ = bars.println(line);
            })
        });
        Progress {
            bars,
            stage: ProgressBar::hidden(),
            _notes,
        }
    }

    pub fn start_stage(&mut self, name: &str, runs: usize) {
        match &self.bars {
            Some(bars) => {
                self.stage = bars.add(ProgressBar::new(runs as u64).with_style(style(
                    "{prefix:.bold} runs {pos}/{len} [{bar:25}] {elapsed_precise} eta {eta}",
                )));
                self.stage.set_prefix(name.to_string());
            }
            None => eprintln!("stage {name}: {runs} run(s)"),
        }
    }

    /// The epoch bar of a run of `epochs` epochs.
    pub fn start_run(&self, name: &str, epochs: usize) -> EpochProgress {
        let bar = match &self.bars {
            Some(bars) => {
                let bar = bars.add(ProgressBar::new(epochs as u64).with_style(style(
                    "  {prefix} epoch {pos}/{len} [{bar:25}] eta {eta} {msg}",
                )));
                bar.set_prefix(name.to_string());
                bar
            }
            None => ProgressBar::hidden(),
        };
        EpochProgress {
            bar,
            plain: self.bars.is_none(),
            run: name.to_string(),
            epochs,
        }
    }

    pub fn finish_run(&self, summary: &RunSummary) {
        let line = match &summary.best {
            Some(best) => format!(
                "{}/{}: {}, best epoch {} val_loss {:.4} val_accuracy {:.4}, test_accuracy {:.4} ({:.0} s)",
                summary.stage,
                summary.run,
                summary.status,
                best.epoch,
                best.val_loss,
                best.val_accuracy,
                summary.test.accuracy,
                summary.seconds
            ),
            None => format!(
                "{}/{}: {} with no usable epoch ({:.0} s)",
                summary.stage, summary.run, summary.status, summary.seconds
            ),
        };
        match &self.bars {
            Some(bars) => {
                let _ = bars.println(line);
                self.stage.inc(1);
            }
            None => eprintln!("{line}"),
        }
    }

    /// A line of its own between the bars, or on stderr.
    pub fn note(&self, line: &str) {
        match &self.bars {
            Some(bars) => {
                let _ = bars.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    pub fn finish_stage(&mut self) {
        self.stage.finish_and_clear();
    }
}

/// The epoch bar of one run; a callback of the training loop.
pub struct EpochProgress {
    bar: ProgressBar,
    plain: bool,
    run: String,
    epochs: usize,
}

impl Callback for EpochProgress {
    fn name(&self) -> &'static str {
        "progress"
    }

    fn on_start(&mut self, resumed: Option<&EpochRecord>) -> Result<()> {
        if let Some(last) = resumed {
            self.bar.set_position(last.epoch as u64);
            self.bar.reset_eta();
        }
        Ok(())
    }

    fn on_epoch_end(&mut self, record: &EpochRecord) -> Result<()> {
        let metrics = format!(
            "loss {:.4} acc {:.4} val_loss {:.4} val_acc {:.4} ({:.1} s)",
            record.train_loss,
            record.train_accuracy,
            record.val_loss,
            record.val_accuracy,
            record.seconds
        );
        if self.plain {
            eprintln!(
                "  {} epoch {}/{}: {metrics}",
                self.run, record.epoch, self.epochs
            );
        } else {
            self.bar.set_message(metrics);
            self.bar.inc(1);
        }
        Ok(())
    }
}

impl Drop for EpochProgress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("a valid progress template")
        .progress_chars("=> ")
}
