//! One run in steps: ready its folder, build, choose how to step, fit, test; and
//! halting a run a rung left behind. It trains one run from its plan to its summary:
//! readies its folder (resuming an interrupted run), builds the model with any
//! transferred layers, chooses how the loop steps, fits it with its callbacks, and
//! tests its best weights.

use crate::cluster::claim::Claim;
use crate::data::{Dataset, Split};
use crate::metrics::{TestMetrics, TestReport};
use crate::models::{count_parameters, Network};
use crate::outputs::run_folder::{ResumeState, RunFolder};
use crate::outputs::summary::RunSummary;
use crate::precision::{layout, Bf16Autocast, Precision};
use crate::runner::callbacks::{
    ClaimGuard, EarlyStopping, EpochLog, FolderCheckpointer, PauseAt, TensorBoardLog,
};
use crate::runner::progress::Progress;
use crate::runner::transfer::{precompute, transfer_layers};
use crate::study::plan::RunPlan;
use crate::train::{fit, Callback, Fitted, FusedInputDense, Learner, Outcome, Resumed};
use anyhow::{Context, Result};
use std::path::Path;
use std::time::Instant;
use tch::{nn, Device};

/// Where a run trains and what it may read besides its own folder.
pub struct RunContext<'a> {
    pub device: Device,
    pub precision: Precision,
    pub progress: &'a Progress,
    /// The checkpoint a `transfer` takes its layers from.
    pub transfer_checkpoint: Option<&'a Path>,
    /// The run's claim, checked before every epoch is committed.
    pub claim: Option<&'a Claim>,
    /// Also write the run's TensorBoard event files.
    pub tensorboard: bool,
    /// Pause the run after this epoch (a rung of successive halving) instead of
    /// training it to the end.
    pub pause_at: Option<usize>,
}

/// Trains `run` on `data` in `folder` and tests its best epoch; none when it paused at
/// `context.pause_at`. The result is not committed here: the caller writes it once the
/// summary is recorded.
pub fn train(
    run: &RunPlan,
    data: &Dataset,
    folder: &RunFolder,
    context: &RunContext,
) -> Result<Option<RunSummary>> {
    let resume = ready_folder(folder, run, data, context.progress)?;
    let start = Instant::now();
    let bf16 = context.precision.bf16;
    let _autocast = autocast(context)?;
    let mut vs = nn::VarStore::new(context.device);
    let built = build(run, data, &vs, context)?;
    if let Some(resumed) = &resume {
        let weights = folder.resume_weights(&resumed.state);
        vs.load(&weights)
            .with_context(|| format!("cannot load {}", weights.display()))?;
    }
    let stepping = Stepping::choose(&built, run, data, bf16, context.progress);
    let data = stepping.data().unwrap_or(data);
    let network = stepping.network();
    let fitted = fit_with_callbacks(network, &vs, data, run, folder, resume, context)?;
    if fitted.outcome == Outcome::Paused {
        return Ok(None);
    }
    let test = test_best(folder, &mut vs, network.model, &data.test, run, &fitted)?;
    if fitted.outcome == Outcome::Diverged {
        context.progress.note(&format!(
            "{}: the loss became NaN or infinite at epoch {}: stopped and marked diverged",
            run.id(),
            fitted.epochs
        ));
    }
    let summary = summarise(run, &vs, context, fitted, test);
    Ok(Some(RunSummary {
        seconds: start.elapsed().as_secs_f64(),
        ..summary
    }))
}

/// Ends a run paused at a rung that was not promoted: tests its best epoch so far and
/// returns its summary, `halted` at its last committed epoch. Its resume point stays,
/// so a later budget or halving that promotes it continues it.
pub fn halt(
    run: &RunPlan,
    data: &Dataset,
    folder: &RunFolder,
    context: &RunContext,
) -> Result<RunSummary> {
    let state = folder
        .read_resume()?
        .filter(|state| state.continues_as(run, &data.md5))
        .with_context(|| {
            format!(
                "{} has no resume point of its settings to halt at",
                run.id()
            )
        })?;
    let _autocast = autocast(context)?;
    let mut vs = nn::VarStore::new(context.device);
    let built = build(run, data, &vs, context)?;
    let fitted = Fitted {
        outcome: Outcome::Halted,
        epochs: state.point.last.epoch,
        best: state.point.best.record().cloned(),
        last: Some(state.point.last.clone()),
    };
    let test = test_best(
        folder,
        &mut vs,
        built.model.as_ref(),
        &data.test,
        run,
        &fitted,
    )?;
    let seconds = folder
        .read_epochs()?
        .iter()
        .map(|epoch| epoch.seconds)
        .sum();
    let summary = summarise(run, &vs, context, fitted, test);
    Ok(RunSummary { seconds, ..summary })
}

/// A run's summary line, its seconds left at zero for the caller.
fn summarise(
    run: &RunPlan,
    vs: &nn::VarStore,
    context: &RunContext,
    fitted: Fitted,
    test: TestMetrics,
) -> RunSummary {
    let (trainable_params, frozen_params) = count_parameters(vs);
    let cumulative =
        |field: fn(&crate::train::EpochRecord) -> f64| fitted.last.as_ref().map_or(0.0, field);
    RunSummary {
        stage: run.stage.clone(),
        run: run.name.clone(),
        hyperparameters: run.hyperparameters(),
        trainable_params,
        frozen_params,
        status: fitted.outcome,
        best: fitted.best,
        test,
        epochs: fitted.epochs,
        seconds: 0.0,
        train_seconds: cumulative(|last| last.cumulative_seconds),
        train_cpu_seconds: cumulative(|last| last.cumulative_cpu_seconds),
        device: format!("{:?}{}", context.device, context.precision.label()).to_lowercase(),
        reused_from: None,
        repeat_of: run.repeat_of.clone(),
    }
}

/// An interrupted run of the same settings, found in its folder.
struct ToResume {
    state: ResumeState,
    optimizer: crate::train::OptimizerState,
}

/// Readies the run folder: returns what to resume from, if the folder holds an
/// interrupted run of the same settings. Results of other settings, and unreadable
/// ones, are moved aside, never mixed with the new ones.
fn ready_folder(
    folder: &RunFolder,
    run: &RunPlan,
    data: &Dataset,
    progress: &Progress,
) -> Result<Option<ToResume>> {
    let label = run.id();
    let state = folder.read_resume().unwrap_or_else(|error| {
        progress.note(&format!(
            "{label}: its resume point cannot be read ({error:#}); restarting from epoch 1"
        ));
        None
    });
    // A run whose budget alone grew continues from its resume point, which halving
    // stages keep after their runs end.
    let continues = state
        .as_ref()
        .is_some_and(|state| state.continues_as(run, &data.md5));
    let foreign = match folder.read_result() {
        Ok(Some(result)) => (!result.is_run_of(run, &data.md5) && !continues)
            .then(|| "its settings or data changed since it ran".to_string()),
        Ok(None) => (state.is_some() && !continues)
            .then(|| "its settings or data changed since it was interrupted".to_string()),
        Err(error) => Some(format!("its result cannot be read ({error:#})")),
    };
    if let Some(reason) = &foreign {
        let aside = folder.move_aside()?;
        progress.note(&format!(
            "{label}: {reason}; the old results were moved to {}",
            aside.display()
        ));
    }
    folder.create()?;
    folder.discard_result()?;
    let Some(state) = state.filter(|_| foreign.is_none()) else {
        folder.clear_resume()?;
        return Ok(None);
    };
    match folder.read_optimizer_state(&state) {
        Ok(optimizer) => {
            progress.note(&format!(
                "{label}: resuming after epoch {}",
                state.point.last.epoch
            ));
            Ok(Some(ToResume { state, optimizer }))
        }
        Err(error) => {
            progress.note(&format!(
                "{label}: the optimizer state of its resume point cannot be read ({error:#}); \
                 restarting from epoch 1"
            ));
            folder.clear_resume()?;
            Ok(None)
        }
    }
}

/// A model whose parameters live in a VarStore, with its transferred layers.
struct Built {
    model: Box<dyn Network>,
    /// The path prefixes of the layers transferred and frozen.
    frozen: Vec<String>,
}

fn build(run: &RunPlan, data: &Dataset, vs: &nn::VarStore, context: &RunContext) -> Result<Built> {
    let model = crate::random::draw_seeded(run.training.seed, || {
        run.model.build(&vs.root(), data.input)
    });
    let frozen = match &run.transfer {
        Some(transfer) => {
            let checkpoint = context
                .transfer_checkpoint
                .context("a transfer needs its source checkpoint")?;
            transfer_layers(vs, &run.model, transfer, checkpoint)?
        }
        None => Vec::new(),
    };
    if context.precision.channels_last(context.device) {
        layout::to_channels_last(vs)?;
    }
    Ok(Built { model, frozen })
}

/// How the loop steps through the model.
enum Stepping<'m> {
    /// Frozen leading layers give the same outputs every epoch: they are computed
    /// once, and the loop trains the rest on them.
    Precomputed {
        rest: &'m dyn nn::ModuleT,
        features: Box<Dataset>,
    },
    /// The whole model every batch, with the fused first-layer step when it applies.
    Whole(Learner<'m>),
}

impl<'m> Stepping<'m> {
    fn choose(
        built: &'m Built,
        run: &RunPlan,
        data: &Dataset,
        bf16: bool,
        progress: &Progress,
    ) -> Self {
        match built.model.split_frozen(&built.frozen) {
            // Test-time views need the images, not what frozen layers make of them.
            Some((extractor, rest))
                if !run.training.varies_inputs() && run.training.tta.is_empty() =>
            {
                let started = Instant::now();
                let features = Box::new(precompute(extractor, data));
                progress.note(&format!(
                    "{}: outputs of the frozen {} computed once ({:.1} s), not every epoch",
                    run.id(),
                    built.frozen.join(", "),
                    started.elapsed().as_secs_f64()
                ));
                Stepping::Precomputed { rest, features }
            }
            _ => Stepping::Whole(Learner {
                model: built.model.as_ref(),
                // The fused update adds a bf16 product into float32 weights in place,
                // which autocast does not convert.
                fused: FusedInputDense::for_training(
                    built.model.split_input_dense(),
                    &run.training,
                )
                .filter(|_| !bf16),
            }),
        }
    }

    fn network(&self) -> Learner<'m> {
        match self {
            Stepping::Precomputed { rest, .. } => Learner {
                model: *rest,
                fused: None,
            },
            Stepping::Whole(network) => *network,
        }
    }

    /// The data the loop sees in place of the run's own, if any.
    fn data(&self) -> Option<&Dataset> {
        match self {
            Stepping::Precomputed { features, .. } => Some(features),
            Stepping::Whole(_) => None,
        }
    }
}

fn fit_with_callbacks(
    network: Learner,
    vs: &nn::VarStore,
    data: &Dataset,
    run: &RunPlan,
    folder: &RunFolder,
    resume: Option<ToResume>,
    context: &RunContext,
) -> Result<Fitted> {
    let mut log = EpochLog::new(folder, run);
    let mut stopper = run
        .training
        .patience
        .map(|patience| EarlyStopping::new(run.training.monitor, patience));
    let mut bar = context.progress.start_run(&run.name, run.training.epochs);
    let mut guard = context.claim.map(ClaimGuard);
    // The guard first: a run taken over by another process logs nothing more.
    let mut callbacks: Vec<&mut dyn Callback> = guard
        .iter_mut()
        .map(|guard| guard as &mut dyn Callback)
        .collect();
    callbacks.push(&mut log);
    let mut tensorboard = context
        .tensorboard
        .then(|| TensorBoardLog::new(folder, run));
    if let Some(tensorboard) = tensorboard.as_mut() {
        callbacks.push(tensorboard);
    }
    if let Some(stopper) = stopper.as_mut() {
        callbacks.push(stopper);
    }
    callbacks.push(&mut bar);
    let mut pause = context.pause_at.map(PauseAt::new);
    if let Some(pause) = pause.as_mut() {
        callbacks.push(pause);
    }
    let mut checkpointer = FolderCheckpointer {
        folder,
        plan: run,
        data_md5: &data.md5,
    };
    fit(
        network,
        vs,
        data,
        &run.training,
        resume.map(|resumed| Resumed {
            point: resumed.state.point,
            optimizer: resumed.optimizer,
        }),
        &mut callbacks,
        &mut checkpointer,
    )
}

/// Reloads the best epoch's weights, tests them and writes the test tables; undefined
/// scores when no epoch was usable (a run that diverged at once).
fn test_best(
    folder: &RunFolder,
    vs: &mut nn::VarStore,
    network: &dyn nn::ModuleT,
    test: &Split,
    run: &RunPlan,
    fitted: &Fitted,
) -> Result<TestMetrics> {
    if fitted.best.is_none() {
        return Ok(TestMetrics::UNDEFINED);
    }
    let checkpoint = folder.checkpoint();
    vs.load(&checkpoint)
        .with_context(|| format!("cannot reload {}", checkpoint.display()))?;
    let views = &run.training.tta;
    let logits = crate::train::predict_with_views(network, &test.images, test.task, views)?;
    let report = TestReport::of(&logits, test)?;
    report.write(folder.dir())?;
    Ok(report.metrics())
}

/// This thread's bf16 autocast while the guard lives, under `--bf16`.
fn autocast(context: &RunContext) -> Result<Option<Bf16Autocast>> {
    context
        .precision
        .bf16
        .then(|| Bf16Autocast::enter(context.device))
        .transpose()
}
