#!/usr/bin/env python3
"""Compares cellnets' TPE with Optuna's TPESampler on one recorded history (issue #34).

    cargo run --release --example tpe_next -- experiments/tpe-evidence.yaml out/tpe-evidence tpe_s0 200 > next.csv
    /path/to/venv/bin/python scripts/tpe_optuna_compare.py next.csv experiments/tpe-evidence.yaml tpe_s0

`next.csv` holds the stage's history (every configuration drawn and its value by the
stage's winner rule) and cellnets' next 200 proposals from it, each from a stream of
its own. This script feeds the same history to Optuna (optuna.trial.create_trial and
study.add_trial, with the manifest's space as Optuna distributions, maximising) and
draws 200 proposals for the next trial, each from a fresh TPESampler(seed=i) with
Optuna's defaults but the stage's n_startup_trials and multivariate (Optuna 5 makes
multivariate its default for one objective; cellnets keeps univariate), each asked
trial told FAIL, so that it does not count as history. It then prints, per key, the two samples side by side:
for numbers the 10th, 50th and 90th percentiles and the two-sample Kolmogorov-Smirnov
distance (and that of 200 uniform draws from the prior, for scale); for choices each
value's share.
"""

import math
import random
import sys

import optuna
import yaml


def read_tables(path):
    text = open(path).read().strip().split("\n\n")
    tables = []
    for block in text:
        lines = block.strip().splitlines()
        header = lines[0].split(",")
        tables.append([dict(zip(header, line.split(","))) for line in lines[1:]])
    return tables


def distributions(manifest, stage):
    spec = next(s for s in yaml.safe_load(open(manifest))["stages"] if s["name"] == stage)
    sample = spec["sample"]
    space = {}
    for key, kind in sample["space"].items():
        (name, values), = kind.items()
        if name == "uniform":
            space[key] = optuna.distributions.FloatDistribution(values[0], values[1])
        elif name == "loguniform":
            space[key] = optuna.distributions.FloatDistribution(values[0], values[1], log=True)
        elif name == "int":
            space[key] = optuna.distributions.IntDistribution(values[0], values[1])
        else:
            space[key] = optuna.distributions.CategoricalDistribution(values)
    return space, sample.get("n_startup_trials", 10), sample.get("multivariate", False)


def parse(distribution, text):
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return next(c for c in distribution.choices if str(c) == text)
    if isinstance(distribution, optuna.distributions.IntDistribution):
        return int(text)
    return float(text)


def ks(a, b):
    a, b = sorted(a), sorted(b)
    points = sorted(set(a) | set(b))
    cdf = lambda xs, x: sum(1 for v in xs if v <= x) / len(xs)
    return max(abs(cdf(a, x) - cdf(b, x)) for x in points)


def percentiles(values):
    values = sorted(values)
    pick = lambda q: values[min(len(values) - 1, int(q * len(values)))]
    return pick(0.1), pick(0.5), pick(0.9)


def main():
    next_csv, manifest, stage = sys.argv[1:4]
    history, ours = read_tables(next_csv)
    space, startup, multivariate = distributions(manifest, stage)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    for row in history:
        if row["value"] == "pending":
            continue
        params = {key: parse(d, row[key]) for key, d in space.items()}
        study.add_trial(
            optuna.trial.create_trial(params=params, distributions=space, value=float(row["value"]))
        )
    theirs = []
    for seed in range(len(ours)):
        # The stage's own `multivariate` (cellnets' default false; Optuna 5 defaults to
        # true for one objective, so it is passed explicitly).
        study.sampler = optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=startup, multivariate=multivariate
        )
        trial = study.ask(space)
        theirs.append(dict(trial.params))
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    rng = random.Random(0)
    print(f"history: {len(history)} configurations of {stage}; {len(ours)} next proposals each "
          f"(cellnets: {sum(r['drawn'] == 'model' for r in ours)} by the model)")
    best = max(history, key=lambda row: float(row["value"]) if row["value"] != "pending" else -1)
    print("best so far: " + ", ".join(f"{k}={best[k]}" for k in space) + f" (value {best['value']})")
    for key, d in space.items():
        a = [parse(d, row[key]) for row in ours]
        b = [row[key] for row in theirs]
        if isinstance(d, optuna.distributions.CategoricalDistribution):
            share = lambda xs, c: sum(1 for x in xs if x == c) / len(xs)
            cells = ", ".join(f"{c}: {share(a, c):.2f} vs {share(b, c):.2f}" for c in d.choices)
            print(f"{key}: share cellnets vs optuna: {cells}")
            continue
        transform = math.log10 if d.log else (lambda x: x)
        a, b = [transform(x) for x in a], [transform(x) for x in b]
        low, high = transform(d.low), transform(d.high)
        prior = [rng.uniform(low, high) for _ in a]
        name = f"{key} (log10)" if d.log else key
        pa, pb = percentiles(a), percentiles(b)
        print(
            f"{name}: p10/p50/p90 cellnets {pa[0]:.3f}/{pa[1]:.3f}/{pa[2]:.3f}, "
            f"optuna {pb[0]:.3f}/{pb[1]:.3f}/{pb[2]:.3f}; KS cellnets-optuna {ks(a, b):.3f}, "
            f"cellnets-prior {ks(a, prior):.3f}, optuna-prior {ks(b, prior):.3f}"
        )


if __name__ == "__main__":
    main()
