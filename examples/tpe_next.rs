//! The next proposals cellnets' TPE would make from a finished TPE stage's recorded
//! history, for comparing with Optuna's TPESampler on the same history
//! (scripts/tpe_optuna_compare.py).
//!
//!     cargo run --release --example tpe_next -- MANIFEST OUT STAGE [COUNT]
//!
//! Writes two CSV tables to stdout, separated by an empty line: the history (each
//! drawn configuration's values and its value by the stage's winner rule), then COUNT
//! (default 200) proposals for the position after the last, each from a stream of its
//! own (seeds 0, 1, ...), each seeing the whole history.

use anyhow::{bail, Context, Result};
use cellnets::outputs::proposals::{drawn_runs, read_proposals};
use cellnets::outputs::rungs::Stand;
use cellnets::outputs::winners::{plan_with_recorded_winners, ranking_monitor};
use cellnets::study::search::short_text;
use cellnets::study::search::tpe::{propose, Drawn, Observation};
use serde_yaml::Value;
use std::path::Path;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [manifest, out, stage, rest @ ..] = args.as_slice() else {
        bail!("usage: tpe_next MANIFEST OUT STAGE [COUNT]");
    };
    let count: u64 = rest.first().map_or(Ok(200), |text| text.parse())?;
    let manifest = cellnets::study::manifest::load(Path::new(manifest))?;
    let out = Path::new(out);
    let plans = plan_with_recorded_winners(&manifest, out)?;
    let (plan, _) = plans
        .iter()
        .find(|(plan, _)| &plan.name == stage)
        .with_context(|| format!("no stage `{stage}`"))?;
    let proposals = plan.proposals.as_ref().context("not a TPE stage")?;
    let records = read_proposals(out, plan)?;
    let runs = drawn_runs(plan, &records)?;
    let ranking = ranking_monitor(runs.iter());
    let mut history = Vec::new();
    for (run, record) in runs.iter().zip(&records) {
        let stand = Stand::read(out, run, None, None)?;
        let score = stand
            .result
            .map(|_| stand.value_at(run.training.epochs, ranking));
        history.push(Observation {
            values: record.ordered_values(proposals)?,
            score,
        });
    }
    let keys: Vec<&str> = proposals
        .space
        .iter()
        .map(|(key, _)| key.as_str())
        .collect();
    let text = |values: &[Value]| -> Vec<String> {
        values
            .iter()
            .map(|value| match value.as_f64() {
                Some(number) if value.is_f64() => format!("{number}"),
                _ => short_text(value),
            })
            .collect()
    };
    println!("{},value", keys.join(","));
    for seen in &history {
        let score = seen.score.map_or("pending".to_string(), |s| s.to_string());
        println!("{},{score}", text(&seen.values).join(","));
    }
    println!();
    println!("{},drawn", keys.join(","));
    for seed in 0..count {
        let (values, drawn) = propose(
            &proposals.space,
            &proposals.settings,
            seed,
            history.len(),
            &history,
        );
        let drawn = match drawn {
            Drawn::Model { .. } => "model",
            Drawn::Startup | Drawn::RandomFraction => "random",
        };
        println!("{},{drawn}", text(&values).join(","));
    }
    Ok(())
}
