//! Reading a manifest and the checks serde cannot make: names that become folders,
//! stages that refer to earlier ones, settings that exclude each other. Every error
//! says what to change.

use super::stage::{default_train_fraction, DatasetSpec, Manifest, Stage, Validation};
use super::yaml::{explain_yaml_error, GRID_KEYS};
use crate::storage::out_dir;
use crate::study::ensemble::{split_member, Ensemble};
use anyhow::{bail, Context, Result};
use serde_yaml::Value;
use std::collections::HashSet;
use std::path::Path;

/// Reads and checks a manifest. Every error names the file.
pub fn load(path: &Path) -> Result<Manifest> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read the manifest {}: give the path of an experiments YAML file",
            path.display()
        )
    })?;
    let mut manifest =
        parse(&text).with_context(|| format!("invalid manifest {}", path.display()))?;
    manifest.source = Some(path.to_path_buf());
    Ok(manifest)
}

pub fn parse(text: &str) -> Result<Manifest> {
    let mut manifest: Manifest = serde_yaml::from_str(text).map_err(explain_yaml_error)?;
    if manifest.stages.is_empty() {
        bail!("`stages` is empty: add at least one stage");
    }
    let stage_datasets = manifest
        .stages
        .iter_mut()
        .filter_map(|s| s.dataset.as_mut());
    for dataset in std::iter::once(&mut manifest.dataset).chain(stage_datasets) {
        complete_dataset(dataset).context("bad dataset")?;
    }
    let datasets = std::iter::once(&manifest.dataset).chain(
        manifest
            .stages
            .iter()
            .filter_map(|stage| stage.dataset.as_ref()),
    );
    for dataset in datasets {
        check_path_safe_name(&dataset.name).context("bad dataset name")?;
    }
    let mut seen = HashSet::new();
    let mut ensembles = HashSet::new();
    for stage in &manifest.stages {
        check_not_started_from(stage, &ensembles)?;
        match &stage.ensemble {
            Some(ensemble) => {
                check_path_safe_name(&stage.name).context("bad stage name")?;
                check_not_reserved(&stage.name)?;
                check_ensemble(stage, ensemble, &seen, &ensembles)?;
            }
            None => check_stage(stage, &seen)?,
        }
        // `seen` holds the stages that train, which `from`, `transfer` and members name.
        let name = stage.name.as_str();
        if seen.contains(name) || ensembles.contains(name) {
            bail!(
                "two stages are named `{}`: stage names must be unique",
                stage.name
            );
        }
        match stage.ensemble {
            Some(_) => ensembles.insert(name),
            None => seen.insert(name),
        };
    }
    Ok(manifest)
}

/// Names a folder data set after its folder when the manifest gives no name, and checks
/// what only folder data sets may set; a data set needs a name or a folder.
fn complete_dataset(spec: &mut DatasetSpec) -> Result<()> {
    if spec.validation == Validation::Official && spec.train_fraction != default_train_fraction() {
        bail!(
            "`train_fraction` sets the holdout, and `validation: official` validates on the \
             file's val split instead: remove one of them"
        );
    }
    let Some(folder) = &spec.folder else {
        if spec.split.is_some() {
            bail!("`split` applies to `folder` data sets only; a MedMNIST file has its own splits");
        }
        if spec.name.is_empty() {
            bail!(
                "a dataset needs a `name` (a MedMNIST file such as bloodmnist) or a `folder` \
                 (images in one subfolder per class)"
            );
        }
        return Ok(());
    };
    if spec.name.is_empty() {
        let last = folder
            .canonicalize()
            .unwrap_or_else(|_| folder.clone())
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-');
        spec.name = last
            .chars()
            .map(|c| if plain(c) { c } else { '_' })
            .collect::<String>()
            .trim_start_matches('_')
            .to_string();
        if spec.name.is_empty() {
            spec.name = "images".into();
        }
    }
    let split = spec.split.unwrap_or_default();
    let share = |value: f64| (0.0..1.0).contains(&value);
    if !(share(split.val) && share(split.test) && split.val + split.test < 1.0) {
        bail!(
            "dataset `split`: val ({}) and test ({}) must each be in [0, 1) and leave images \
             to train on",
            split.val,
            split.test
        );
    }
    Ok(())
}

/// Checks what one stage can be checked for on its own; `earlier_stages` holds the names of
/// the stages before it.
fn check_stage(stage: &Stage, earlier_stages: &HashSet<&str>) -> Result<()> {
    check_path_safe_name(&stage.name).context("bad stage name")?;
    check_not_reserved(&stage.name)?;
    let earlier = |name: &str, role: &str| {
        if earlier_stages.contains(name) {
            Ok(())
        } else {
            Err(anyhow::anyhow!(
                "stage `{}` {role} `{name}`, which is not an earlier stage of the manifest",
                stage.name
            ))
        }
    };
    match (&stage.model, &stage.from) {
        (Some(_), Some(_)) => bail!(
            "stage `{}` has both `model` and `from`: a stage starting from another takes its \
             winner's model; vary it with `grid`",
            stage.name
        ),
        (None, None) => bail!("stage `{}` needs a `model` or a `from` stage", stage.name),
        (None, Some(from)) => earlier(from, "starts from")?,
        (Some(_), None) => {}
    }
    if let Some(transfer) = &stage.transfer {
        earlier(&transfer.from, "transfers layers from")?;
        if transfer.layers.is_empty() {
            bail!("stage `{}`: `transfer.layers` is empty", stage.name);
        }
    }
    check_report(stage)?;
    check_repeats_and_search(stage)
}

/// A stage's `report` names a model of the study and a benchmark method that exist,
/// and asks for a readable number of pictures.
fn check_report(stage: &Stage) -> Result<()> {
    if let Some(key) = &stage.report.study {
        let models = &crate::study::reference::study().models;
        if !models.contains_key(key) {
            let known: Vec<&str> = models.keys().map(String::as_str).collect();
            bail!(
                "stage `{}`: `report.study: {key}` is not a model of the study; use one of {}",
                stage.name,
                known.join(", ")
            );
        }
    }
    if let Some(key) = &stage.report.baseline {
        if crate::study::catalog::method_name(key).is_none() {
            let known: Vec<&str> = crate::study::catalog::method_keys().collect();
            bail!(
                "stage `{}`: `report.baseline: {key}` is not a method of the MedMNIST v2 \
                 benchmark; use one of {}",
                stage.name,
                known.join(", ")
            );
        }
    }
    if stage.report.mistakes > MAX_MISTAKES {
        bail!(
            "stage `{}`: `report.mistakes: {}` is more than {MAX_MISTAKES} pictures",
            stage.name,
            stage.report.mistakes
        );
    }
    Ok(())
}

/// `repeats`, `sample` and `halving`, each sound and not at odds with the others.
fn check_repeats_and_search(stage: &Stage) -> Result<()> {
    if stage.repeats == Some(0) {
        bail!(
            "stage `{}`: `repeats: 0` trains nothing; give 1 (the default) to train each \
             configuration once, or more to train it with that many seeds",
            stage.name
        );
    }
    if stage.repeats.is_some_and(|repeats| repeats > 1)
        && stage.grid.contains_key(Value::from("seed"))
    {
        bail!(
            "stage `{}` has both `repeats` and a grid over `seed`: repeats already trains \
             seeds seed, seed + 1, ..., so some seeds would train twice; set the first seed \
             in `training: {{seed: ...}}` and drop `seed` from the grid",
            stage.name
        );
    }
    if let Some(sample) = &stage.sample {
        let distributions = sample
            .distributions(&GRID_KEYS, &stage.grid)
            .with_context(|| format!("stage `{}`", stage.name))?;
        let tpe = sample
            .tpe(&distributions, stage.halving.is_some())
            .with_context(|| format!("stage `{}`", stage.name))?;
        if tpe.is_some() {
            check_tpe_stage(stage)?;
        }
    }
    if let Some(halving) = &stage.halving {
        halving
            .check()
            .with_context(|| format!("stage `{}`", stage.name))?;
        if stage.winner.is_some() {
            bail!(
                "stage `{}` has both `halving` and a pinned `winner`: the pinned run may be \
                 halted before the budget; drop one of them",
                stage.name
            );
        }
        if stage.repeats.is_some_and(|repeats| repeats > 1) {
            bail!(
                "stage `{}` has both `halving` and `repeats`: halving ranks single runs at \
                 each rung, not configurations over seeds; drop one of them",
                stage.name
            );
        }
    }
    Ok(())
}

/// What a TPE stage cannot have: each proposal is one run, drawn from the results of
/// the runs before it, so there are no grid cells to cross it with, no seeds to repeat
/// it over, and no run known in advance to pin.
fn check_tpe_stage(stage: &Stage) -> Result<()> {
    let conflict = if !stage.grid.is_empty() {
        Some((
            "a `grid`",
            "move the grid's keys into `sample.space` as `choice`s",
        ))
    } else if stage.repeats.is_some_and(|repeats| repeats > 1) {
        Some((
            "`repeats`",
            "drop `repeats`, or repeat the winner in a later stage",
        ))
    } else if stage.winner.is_some() {
        Some((
            "a pinned `winner`",
            "drop `winner`: TPE's runs are not known before they are proposed",
        ))
    } else {
        None
    };
    match conflict {
        Some((what, fix)) => bail!(
            "stage `{}` has `sample.method: tpe` and {what}: {fix}",
            stage.name
        ),
        None => Ok(()),
    }
}

/// More pictures than anyone reads; a typo like 5000 fails here instead.
const MAX_MISTAKES: usize = 100;

/// Entries that cellnets itself writes directly under out/ beside the stage folders.
/// Names starting with `.` are already refused as folder names.
const RESERVED_UNDER_OUT: [&str; 4] = [
    out_dir::REPORT_DIR,
    out_dir::REPORT_MD,
    out_dir::REPORT_HTML,
    out_dir::SLURM_DIR,
];

/// A stage's folder is out/<stage>: it must not be one of cellnets' own entries there.
/// Compared ignoring case, since macOS and Windows file systems do.
fn check_not_reserved(stage: &str) -> Result<()> {
    if let Some(taken) = RESERVED_UNDER_OUT
        .iter()
        .find(|reserved| reserved.eq_ignore_ascii_case(stage))
    {
        bail!(
            "a stage cannot be named `{stage}`: its results would go to out/{taken}, which \
             cellnets writes itself (`cellnets report` out/{}, out/{} and the figures in \
             out/{}/, `cellnets slurm` out/{}/). Rename the stage",
            out_dir::REPORT_MD,
            out_dir::REPORT_HTML,
            out_dir::REPORT_DIR,
            out_dir::SLURM_DIR
        );
    }
    Ok(())
}

/// Stage and run names become folders under out/: only plain names may pass.
pub fn check_path_safe_name(name: &str) -> Result<()> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '=' | ',');
    if name.is_empty() || name.starts_with('.') || !name.chars().all(plain) {
        bail!(
            "`{name}` cannot be used as a folder name: use letters, digits and `_-.=,`, \
             not starting with `.`"
        );
    }
    Ok(())
}

/// Checks an ensemble stage on its own: no training keys, two or more members from
/// earlier stages that train (`trainers`; `ensembles` are the earlier ensemble stages).
fn check_ensemble(
    stage: &Stage,
    ensemble: &Ensemble,
    trainers: &HashSet<&str>,
    ensembles: &HashSet<&str>,
) -> Result<()> {
    let name = &stage.name;
    let set = [
        ("model", stage.model.is_some()),
        ("from", stage.from.is_some()),
        ("training", stage.training != Default::default()),
        ("grid", !stage.grid.is_empty()),
        ("dataset", stage.dataset.is_some()),
        ("winner", stage.winner.is_some()),
        ("repeats", stage.repeats.is_some()),
        ("transfer", stage.transfer.is_some()),
        ("sample", stage.sample.is_some()),
        ("halving", stage.halving.is_some()),
        ("report.study", stage.report.study.is_some()),
        ("report.mistakes", stage.report.mistakes > 0),
    ];
    if let Some((key, _)) = set.iter().find(|(_, set)| *set) {
        bail!(
            "stage `{name}` has both `ensemble` and `{key}`: an ensemble stage trains nothing, \
             it tests the mean of its members' probabilities; remove `{key}` (set it on the \
             members' stages)"
        );
    }
    match ensemble {
        Ensemble::Runs(runs) => {
            if runs.len() < 2 {
                bail!(
                    "stage `{name}`: `ensemble` lists {} run(s); an ensemble needs two or more \
                     (`[stage/run, stage/run]`)",
                    runs.len()
                );
            }
            let mut seen = HashSet::new();
            for member in runs {
                let (source, run) = split_member(member);
                if run.is_empty() || run.contains('/') {
                    bail!(
                        "stage `{name}`: ensemble member `{member}` is not `stage/run` (a run's \
                         folder under out/, such as `cnn/seed=1`)"
                    );
                }
                if !seen.insert(member) {
                    bail!("stage `{name}`: ensemble member `{member}` is listed twice");
                }
                check_source(name, source, trainers, ensembles)?;
            }
        }
        Ensemble::Top(top) => {
            if top.top < 2 {
                bail!(
                    "stage `{name}`: `ensemble: {{top: {}}}`: an ensemble needs two or more \
                     runs; give `top: 2` or more (one run alone is its stage's winner)",
                    top.top
                );
            }
            check_source(name, &top.of, trainers, ensembles)?;
        }
    }
    Ok(())
}

fn check_source(
    name: &str,
    source: &str,
    trainers: &HashSet<&str>,
    ensembles: &HashSet<&str>,
) -> Result<()> {
    if ensembles.contains(source) {
        bail!(
            "stage `{name}` takes runs of `{source}`, an ensemble stage: an ensemble's members \
             are trained runs; list the runs of `{source}`'s members instead"
        );
    }
    if !trainers.contains(source) {
        bail!(
            "stage `{name}` takes runs of `{source}`, which is not an earlier stage of the \
             manifest"
        );
    }
    Ok(())
}

/// A stage that `from` or `transfer` names must train: an ensemble has no winning run.
fn check_not_started_from(stage: &Stage, ensembles: &HashSet<&str>) -> Result<()> {
    let transfer = stage.transfer.as_ref().map(|transfer| &transfer.from);
    if let Some(source) = stage
        .from
        .iter()
        .chain(transfer)
        .find(|source| ensembles.contains(source.as_str()))
    {
        bail!(
            "stage `{}` starts from `{source}`, an ensemble stage, which has no winning run \
             to start from; start from one of its members' stages",
            stage.name
        );
    }
    Ok(())
}
