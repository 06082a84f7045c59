//! Ensemble stages: `ensemble: [stage/run, ...]` or `ensemble: {top: K, of: STAGE}`.
//! Such a stage trains nothing: it tests the mean of its members' probabilities. This
//! file holds what the manifest and the plan know of it; `runner` evaluates it.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// The members of an ensemble stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Ensemble {
    /// Named runs, each `stage/run` (the run's folder under out/).
    Runs(Vec<String>),
    /// The `top` best finished runs of stage `of`, ranked by the value that picks a
    /// stage's winner (`outputs::winners::top_runs`).
    Top(Top),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Top {
    pub top: usize,
    pub of: String,
}

impl std::fmt::Display for Ensemble {
    /// In words: `the top 2 runs of stage mlp`, `runs a/x, b/y`.
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Ensemble::Runs(runs) => write!(f, "runs {}", runs.join(", ")),
            Ensemble::Top(Top { top, of }) => write!(f, "the top {top} runs of stage {of}"),
        }
    }
}

/// The folder of an ensemble's result under its stage: out/<stage>/ensemble.
pub const ENSEMBLE_RUN: &str = "ensemble";

/// What serde says when `ensemble` is neither form, and what cellnets says instead.
pub const UNTAGGED_ERROR: &str = "data did not match any variant of untagged enum Ensemble";
pub const FORMS: &str = "`ensemble` takes a list of two or more runs, `[stage/run, ...]`, \
                         or the best runs of a stage, `{top: K, of: STAGE}`";

impl Ensemble {
    /// The stages its members come from, each once, in the order written.
    pub fn stages(&self) -> Vec<&str> {
        let mut stages: Vec<&str> = Vec::new();
        let named = match self {
            Ensemble::Runs(runs) => runs.iter().map(|run| split_member(run).0).collect(),
            Ensemble::Top(top) => vec![top.of.as_str()],
        };
        for stage in named {
            if !stages.contains(&stage) {
                stages.push(stage);
            }
        }
        stages
    }

    /// How many members it has.
    pub fn size(&self) -> usize {
        match self {
            Ensemble::Runs(runs) => runs.len(),
            Ensemble::Top(top) => top.top,
        }
    }
}

/// `stage/run` as (stage, run); a name without `/` is all stage.
pub fn split_member(member: &str) -> (&str, &str) {
    member.split_once('/').unwrap_or((member, ""))
}

/// Checks an ensemble's members against the plans of their stages: each named run is
/// one of its stage's runs, and a stage has at least `top` runs. `runs_of` gives a
/// stage's planned run names (none for a stage not planned).
pub fn check_members<'p>(
    name: &str,
    ensemble: &Ensemble,
    runs_of: impl Fn(&str) -> Vec<&'p str>,
) -> Result<()> {
    match ensemble {
        Ensemble::Runs(members) => {
            for member in members {
                let (stage, run) = split_member(member);
                let names = runs_of(stage);
                if !names.contains(&run) {
                    bail!(
                        "stage `{name}`: ensemble member `{member}` is not a run of stage \
                         `{stage}`, whose runs are: {}",
                        names.join(", ")
                    );
                }
            }
        }
        Ensemble::Top(Top { top, of }) => {
            let runs = runs_of(of).len();
            if *top > runs {
                bail!(
                    "stage `{name}`: `ensemble: {{top: {top}, of: {of}}}`, but `{of}` plans \
                     {runs} run(s); give `top: {runs}` or fewer, or more runs to `{of}` \
                     (`repeats`, a `grid`)"
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::study::manifest::parse;
    use crate::study::plan::plan_all;

    const TRAINED: &str = "dataset: {name: bloodmnist}\ndefaults: {epochs: 1}\nstages:\n  \
                           - name: mlp\n    model: {kind: mlp, hidden: 8}\n    grid: {seed: [1, 2]}\n";

    /// The error of the manifest with `stage` after the trained one.
    fn error(stage: &str) -> String {
        let text = format!("{TRAINED}{stage}");
        let result = parse(&text).and_then(|manifest| plan_all(&manifest, |_| Ok(None)));
        format!("{:#}", result.expect_err("refused"))
    }

    #[test]
    fn an_ensemble_names_runs_or_the_top_of_a_stage() {
        for members in ["[mlp/seed=1, mlp/seed=2]", "{top: 2, of: mlp}"] {
            let text = format!("{TRAINED}  - name: both\n    ensemble: {members}\n");
            let plans = plan_all(&parse(&text).unwrap(), |_| Ok(None)).unwrap();
            let (plan, _) = &plans[1];
            assert!(plan.runs.is_empty() && plan.ensemble.is_some());
            assert_eq!(plan.ensemble.as_ref().unwrap().stages(), ["mlp"]);
        }
    }

    #[test]
    fn bad_ensembles_are_refused_with_the_fix() {
        for (stage, expected) in [
            (
                "  - name: e\n    ensemble: [mlp/seed=1, mlp/seed=2]\n    model: {kind: mlp, hidden: 8}\n",
                "has both `ensemble` and `model`",
            ),
            (
                "  - name: e\n    ensemble: {top: 2, of: mlp}\n    repeats: 3\n",
                "remove `repeats`",
            ),
            (
                "  - name: e\n    ensemble: {top: 2, of: mlp}\n    halving: {}\n",
                "remove `halving`",
            ),
            ("  - name: e\n    ensemble: [mlp/seed=1]\n", "two or more"),
            ("  - name: e\n    ensemble: {top: 1, of: mlp}\n", "`top: 2` or more"),
            ("  - name: e\n    ensemble: {top: 3, of: mlp}\n", "plans 2 run(s)"),
            ("  - name: e\n    ensemble: {top: 2, of: later}\n", "not an earlier stage"),
            ("  - name: e\n    ensemble: [mlp/seed=1, mlp/seed=9]\n", "not a run of stage"),
            ("  - name: e\n    ensemble: [mlp/seed=1, mlp/seed=1]\n", "listed twice"),
            ("  - name: e\n    ensemble: [mlp, mlp/seed=1]\n", "is not `stage/run`"),
            ("  - name: e\n    ensemble: {top: 2}\n", "`ensemble` takes a list"),
            (
                "  - name: e\n    ensemble: {top: 2, of: mlp}\n  - name: f\n    from: e\n",
                "an ensemble stage, which has no winning run",
            ),
            (
                "  - name: e\n    ensemble: {top: 2, of: mlp}\n  - name: f\n    ensemble: {top: 2, of: e}\n",
                "an ensemble stage: an ensemble's members are trained runs",
            ),
            ("  - name: mlp\n    ensemble: {top: 2, of: mlp}\n", "must be unique"),
        ] {
            let message = error(stage);
            assert!(message.contains(expected), "{stage}: {message}");
        }
    }
}
