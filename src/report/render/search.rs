//! Searches: for a sampled stage, its proposals over the space (one panel per key) and
//! how each TPE proposal was drawn; across the report, the best value found against
//! configurations tried and against epochs spent, per method (the mean over the
//! stages of that method, configuration by configuration).

use crate::figures::{BestPoint, BestSoFar, ProposalPanel, Proposals};
use crate::report::gather::{Searched, StageResults};
use crate::report::markdown::{metric, table};
use crate::report::output::{Drawing, Section, REPORT_DIR};
use crate::study::search::{short_text, Distribution};

/// A stage's proposals: a chart with a panel per key and, for TPE, a table of how each
/// was drawn.
pub fn section(stage: &StageResults, searched: &Searched, folder: &str) -> Section {
    if searched.configurations.is_empty() {
        return Section::text("");
    }
    let name = &stage.stage.name;
    let winner = stage.winner.as_ref().and_then(|winner| {
        (searched.configurations.iter()).position(|configuration| configuration.run == winner.run)
    });
    let panels = searched
        .space
        .iter()
        .enumerate()
        .map(|(key, (setting, distribution))| {
            let choices = match distribution {
                Distribution::Choice(values) => values.iter().map(short_text).collect(),
                _ => Vec::new(),
            };
            let points = (searched.configurations.iter().enumerate())
                .map(|(i, configuration)| {
                    let by_model = configuration
                        .drawn
                        .as_ref()
                        .is_some_and(|(model, _)| *model);
                    (
                        i as f64 + 1.0,
                        plotted(distribution, &configuration.values[key]),
                        by_model,
                    )
                })
                .collect();
            ProposalPanel {
                y_desc: match distribution {
                    Distribution::LogUniform(..) => format!("{setting} (log10)"),
                    _ => setting.clone(),
                },
                points,
                choices,
                winner: winner.map(|position| position + 1),
            }
        })
        .collect();
    let mut section = Section::text(format!(
        "### Search ({})\n\n{} configuration(s) drawn, in order; each key's values over \
         the proposals (grey: drawn at random; blue: proposed by the model; the winner \
         circled):\n\n![proposals]({folder}/proposals.png)\n\n",
        searched.method,
        searched.configurations.len()
    ));
    section.figure(
        folder,
        "proposals",
        Drawing::Proposals(Proposals {
            title: format!(
                "{name}: proposals over the space (grey: at random, blue: by the model, \
                 circled: the winner)"
            ),
            panels,
        }),
    );
    if searched.configurations.iter().any(|c| c.drawn.is_some()) {
        let rows: Vec<Vec<String>> = (searched.configurations.iter())
            .map(|configuration| {
                vec![
                    format!("`{}`", configuration.run),
                    configuration.epochs.to_string(),
                    metric(Some(configuration.value).filter(|value| value.is_finite())),
                    (configuration.drawn.as_ref()).map_or(String::new(), |(_, how)| how.clone()),
                ]
            })
            .collect();
        section.markdown += "What each proposal was drawn from (its run folder's \
                             `proposal.yaml` lists the results it saw, by run):\n\n";
        section.markdown += &table(&["run", "epochs", "value", "drawn"], &rows);
        section.markdown += "\n";
    }
    section
}

/// A value where its panel plots it: log10 for log-uniform keys, a choice's index.
fn plotted(distribution: &Distribution, value: &serde_yaml::Value) -> f64 {
    match distribution {
        Distribution::LogUniform(..) => value.as_f64().unwrap_or(f64::NAN).log10(),
        Distribution::Choice(values) => values
            .iter()
            .position(|choice| choice == value)
            .map_or(f64::NAN, |index| index as f64),
        _ => value.as_f64().unwrap_or(f64::NAN),
    }
}

/// The best value found so far against configurations tried and epochs spent, one
/// line per method: each the mean, configuration by configuration, over the stages of
/// that method that have trained any (as far as every one of them has got). None
/// without a sampled stage that has.
pub fn compared(stages: &[StageResults]) -> Section {
    let mut methods: Vec<(&str, Vec<Vec<BestPoint>>)> = Vec::new();
    for searched in stages.iter().filter_map(|stage| stage.search.as_ref()) {
        let (mut best, mut epochs) = (f64::NEG_INFINITY, 0);
        // The configurations trained so far: they train in the order drawn.
        let trained = (searched.configurations.iter()).take_while(|c| c.epochs > 0);
        let curve: Vec<BestPoint> = (trained.enumerate())
            .map(|(i, configuration)| {
                epochs += configuration.epochs;
                if configuration.value.is_finite() {
                    best = best.max(configuration.value);
                }
                (i as f64 + 1.0, epochs as f64, best)
            })
            .collect();
        if curve.is_empty() {
            continue;
        }
        match methods
            .iter_mut()
            .find(|(method, _)| *method == searched.method)
        {
            Some((_, curves)) => curves.push(curve),
            None => methods.push((searched.method, vec![curve])),
        }
    }
    if methods.is_empty() {
        return Section::text("");
    }
    let mut rows = Vec::new();
    let lines: Vec<(String, Vec<BestPoint>)> = methods
        .iter()
        .map(|(method, curves)| {
            let length = curves.iter().map(Vec::len).min().unwrap_or(0);
            let mean = |i: usize, pick: fn(&BestPoint) -> f64| {
                curves.iter().map(|curve| pick(&curve[i])).sum::<f64>() / curves.len() as f64
            };
            let line: Vec<BestPoint> = (0..length)
                .map(|i| (i as f64 + 1.0, mean(i, |p| p.1), mean(i, |p| p.2)))
                .collect();
            let last = line.last().copied().unwrap_or((0.0, 0.0, f64::NAN));
            rows.push(vec![
                method.to_string(),
                curves.len().to_string(),
                length.to_string(),
                format!("{:.0}", last.1),
                metric(Some(last.2).filter(|value| value.is_finite())),
            ]);
            (format!("{method} ({} stage(s))", curves.len()), line)
        })
        .collect();
    let name = "searches";
    let mut section = Section::text(format!(
        "## Searches compared\n\nThe best value found so far (the stages' winner rule) \
         after each configuration, against configurations tried and against epochs \
         spent: per method, the mean over its stages, as far as all of them have got.\n\n\
         {}\n![searches]({REPORT_DIR}/{name}.png)\n\n",
        table(
            &[
                "method",
                "stages",
                "configurations",
                "mean epochs",
                "mean best value"
            ],
            &rows
        )
    ));
    section.figure(
        REPORT_DIR,
        name,
        Drawing::BestSoFar(BestSoFar {
            title: "Best value found".to_string(),
            y_desc: "best value so far".to_string(),
            methods: lines,
        }),
    );
    section
}
