#!/usr/bin/env python3
"""TPE against random search, and BOHB against random search with halving, on a real
search (issue #34's evidence).

    scripts/tpe_evidence.py manifest [--count 16] [--epochs 2] [--seeds 5]  > experiments/tpe-evidence.yaml
    scripts/tpe_evidence.py analyse out/tpe-evidence

`manifest` writes one stage per (method, search seed): `random_s<k>` and `tpe_s<k>`
draw `count` configurations of the shallow CNN (learning rate, momentum, batch size,
kernels, kernel size) trained `epochs` epochs each, so both spend the same epochs;
`halving_s<k>` and `bohb_s<k>` draw `count` configurations raced by synchronous
halving ({min_epochs: 1, reduction: 2}) to a budget of `epochs`.

`analyse` reads each stage's summary.csv and the proposal records, and prints per
method the mean (over seeds) best val accuracy after each configuration in proposal
order, how many configurations each seed needed to reach the random search's final
best of the same seed (the mean of those counts against `count`), and for the halving
pair the winner's val accuracy and the epochs spent.
"""

import argparse
import csv
import math
import re
import sys
from pathlib import Path

SPACE = """      space:
        learning_rate: {loguniform: [0.001, 0.5]}
        momentum: {uniform: [0.0, 0.95]}
        batch_size: {choice: [32, 64, 128, 256]}
        kernels: {int: [4, 24]}
        kernel_size: {choice: [3, 5, 7]}
"""


def manifest(count: int, epochs: int, seeds: int, startup: int) -> str:
    head = f"""# Issue #34's evidence: TPE against random search at equal epochs, and BOHB against
# random search with halving, over {seeds} search seeds, on BloodMNIST 28x28 with the
# official val split. Written by scripts/tpe_evidence.py manifest --count {count}
# --epochs {epochs} --seeds {seeds} --startup {startup}; analysed by
# scripts/tpe_evidence.py analyse out/tpe-evidence. Sized for a 2-core CPU shared with
# other work (--threads 1): a few epochs of a small CNN per configuration.
out: out/tpe-evidence
dataset: {{name: bloodmnist, image_size: 28, validation: official}}
defaults: {{epochs: {epochs}, optimizer: sgd, monitor: val_accuracy, seed: 0}}

stages:
"""
    stages = []
    # Seed by seed, so that a run cut short still compares the methods on equal seeds.
    pairs = [[("random", False), ("tpe", False)], [("halving", True), ("bohb", True)]]
    order = [(method, halving, seed) for pair in pairs for seed in range(seeds) for method, halving in pair]
    for method, halving, seed in order:
        tpe = method in ("tpe", "bohb")
        lines = [
            f"  - name: {method}_s{seed}",
            "    model: {kind: cnn, kernels: 8, kernel_size: 3}",
            "    sample:",
        ]
        if tpe:
            lines.append("      method: tpe")
            lines.append(f"      n_startup_trials: {startup}")
        lines.append(f"      count: {count}")
        # Random search with halving draws from seeds of its own: with random's
        # seeds it would draw random's very configurations, and reuse their runs
        # (trained to the budget) instead of racing them.
        lines.append(f"      seed: {seed + 100 if method == 'halving' else seed}")
        text = "\n".join(lines) + "\n" + SPACE
        if halving:
            text += "    halving: {min_epochs: 1, reduction: 2}\n"
        stages.append(text)
    return head + "".join(stages)


def sample_index(run: str) -> int:
    return int(re.match(r"sample=(\d+)", run).group(1))


def read_stage(stage: Path):
    """(index, best_val_accuracy, epochs_run, status) per run, in proposal order."""
    with open(stage / "summary.csv") as file:
        rows = list(csv.DictReader(file))
    runs = [
        (sample_index(row["run"]), float(row["best_val_accuracy"]), int(row["epochs_run"]), row["status"])
        for row in rows
    ]
    return sorted(runs)


def running_best(values):
    best, out = -math.inf, []
    for value in values:
        best = max(best, value)
        out.append(best)
    return out


def analyse(out: Path):
    # Only stages that settled a winner: every configuration drawn and ended.
    stages = sorted(path for path in out.iterdir() if (path / "winner.yaml").exists())
    by_method = {}
    for stage in stages:
        method, seed = stage.name.rsplit("_s", 1)
        by_method.setdefault(method, {})[int(seed)] = read_stage(stage)
    # Compare methods on the seeds both have finished.
    for first, second in (("random", "tpe"), ("halving", "bohb")):
        both = set(by_method.get(first, {})) & set(by_method.get(second, {}))
        for method in (first, second):
            if method in by_method:
                by_method[method] = {seed: runs for seed, runs in by_method[method].items() if seed in both}
    for method in ("random", "tpe"):
        seeds = by_method.get(method, {})
        if not seeds:
            continue
        curves = [running_best([value for _, value, _, _ in runs]) for runs in seeds.values()]
        length = min(len(curve) for curve in curves)
        mean = [sum(curve[i] for curve in curves) / len(curves) for i in range(length)]
        print(f"{method}: {len(curves)} seeds; mean best val accuracy after each configuration:")
        print("  " + " ".join(f"{value:.4f}" for value in mean))
    means = {}
    for method in ("random", "tpe"):
        curves = [running_best([v for _, v, _, _ in runs]) for runs in by_method.get(method, {}).values()]
        if curves:
            means[method] = [sum(c[i] for c in curves) / len(curves) for i in range(min(map(len, curves)))]
    if len(means) == 2:
        target = means["random"][-1]
        reach = next((i + 1 for i, value in enumerate(means["tpe"]) if value >= target), None)
        print(
            f"mean curves: random's final {target:.4f} after {len(means['random'])}; "
            f"TPE's mean curve reaches it after {reach if reach else 'more than ' + str(len(means['tpe']))} "
            f"configurations; TPE's final {means['tpe'][-1]:.4f}"
        )
    if "random" in by_method and "tpe" in by_method:
        print("configurations to reach the random search's final best (same seed):")
        ratios = []
        for seed in sorted(by_method["random"]):
            if seed not in by_method["tpe"]:
                continue
            random_runs, tpe_runs = by_method["random"][seed], by_method["tpe"][seed]
            target = max(value for _, value, _, _ in random_runs)
            need = lambda runs: next(
                (i + 1 for i, best in enumerate(running_best([v for _, v, _, _ in runs])) if best >= target),
                None,
            )
            random_need, tpe_need = need(random_runs), need(tpe_runs)
            shown = tpe_need if tpe_need is not None else f"not within {len(tpe_runs)}"
            tpe_best = max(value for _, value, _, _ in tpe_runs)
            print(
                f"  seed {seed}: random's best {target:.4f} after {random_need}; "
                f"tpe reaches it after {shown} (tpe's best {tpe_best:.4f})"
            )
            # A TPE search that never reaches it counts as needing all it drew, plus one.
            ratios.append((tpe_need or len(tpe_runs) + 1) / random_need)
        if ratios:
            print(f"  mean tpe/random ratio of configurations needed: {sum(ratios) / len(ratios):.2f}")
    for method in ("halving", "bohb"):
        seeds = by_method.get(method, {})
        if not seeds:
            continue
        finals, epochs = [], []
        for runs in seeds.values():
            budget = max(epochs_run for _, _, epochs_run, _ in runs)
            finished = [value for _, value, run_epochs, status in runs if status == "finished"]
            finals.append(max(finished) if finished else float("nan"))
            epochs.append(sum(epochs_run for _, _, epochs_run, _ in runs))
        print(
            f"{method}: winners' val accuracy per seed {' '.join(f'{v:.4f}' for v in finals)}; "
            f"mean {sum(finals) / len(finals):.4f}; epochs per seed {epochs}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    write = commands.add_parser("manifest")
    write.add_argument("--count", type=int, default=16)
    write.add_argument("--epochs", type=int, default=2)
    write.add_argument("--seeds", type=int, default=5)
    write.add_argument("--startup", type=int, default=10)
    read = commands.add_parser("analyse")
    read.add_argument("out", type=Path)
    args = parser.parse_args()
    if args.command == "manifest":
        sys.stdout.write(manifest(args.count, args.epochs, args.seeds, args.startup))
    else:
        analyse(args.out)


if __name__ == "__main__":
    main()
