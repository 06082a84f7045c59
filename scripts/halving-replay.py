#!/usr/bin/env python3
"""Replays synchronous successive halving on a stage that trained every run to the end.

    scripts/halving-replay.py out/cnn_grid [--budget 27] [--settings 1,3 3,3 1,2 1,4]
                              [--monitor val_loss]

Reads each run's epochs.csv under the stage folder (a stage without early stopping) and,
for each (min_epochs, reduction) setting, applies cellnets' rule (src/outputs/rungs.rs)
to the recorded curves: at each
rung the value of a run is the val accuracy of its best epoch so far by the monitor,
and the best ceil(n / reduction) of the n runs go on. Since a promoted run continues
bit for bit, these are the decisions a halving stage of the same settings makes (with
the same thread count). Prints, per setting, the winner, the last three standing,
the epochs trained against the full grid's, and whether the full grid's winner and top
three survive. The "last three standing" are the runs of the last rung that still had
three or more, the furthest trained first. Runs are ordered by the numbers in their
names (the order a grid of ascending values plans them in), which breaks ties as
cellnets does.
"""

import argparse
import csv
import math
import re
import sys
from pathlib import Path


def read_curves(stage: Path, monitor: str):
    curves = {}
    for table in sorted(stage.glob("*/epochs.csv")):
        if ".replaced-" in table.parent.name:
            continue
        with table.open() as file:
            rows = [
                (int(row["epoch"]), float(row[monitor]), float(row["val_accuracy"]))
                for row in csv.DictReader(file)
            ]
        curves[table.parent.name] = rows
    return curves


def plan_order(name: str):
    return tuple(float(number) for number in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", name))


def value_at(curve, epochs: int, lower_is_better: bool) -> float:
    best = None
    for epoch, monitored, accuracy in curve:
        if epoch > epochs or not math.isfinite(monitored):
            continue
        better = best is None or (
            monitored < best[0] if lower_is_better else monitored > best[0]
        )
        if better:
            best = (monitored, accuracy)
    return float("nan") if best is None else best[1]


def ranked(names, curves, order, epochs, lower_is_better):
    def key(name):
        value = value_at(curves[name], epochs, lower_is_better)
        return (-(value if math.isfinite(value) else -math.inf), order[name])

    return sorted(names, key=key)


def rungs(min_epochs: int, reduction: int, budget: int):
    points = [min_epochs]
    while points[-1] * reduction < budget:
        points.append(points[-1] * reduction)
    return points + [budget]


def replay(curves, order, budget, min_epochs, reduction, lower_is_better):
    """The winner, the last three standing (the runs of the last rung that had three or
    more, best first by the epochs each trained) and the epochs trained."""
    alive = sorted(curves, key=lambda name: order[name])
    trained = {name: 0 for name in curves}
    last_three = alive
    for rung in rungs(min_epochs, reduction, budget):
        for name in alive:
            trained[name] = rung
        if len(alive) >= 3:
            last_three = alive
        if rung == budget:
            break
        keep = math.ceil(len(alive) / reduction)
        alive = ranked(alive, curves, order, rung, lower_is_better)[:keep]
    winner = ranked(alive, curves, order, budget, lower_is_better)[0]
    by_reach = sorted(
        last_three,
        key=lambda name: (-trained[name],
                          -value_at(curves[name], trained[name], lower_is_better)),
    )
    return winner, by_reach[:3], sum(trained.values())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage", type=Path, help="a stage folder, e.g. out/cnn_grid")
    parser.add_argument("--budget", type=int, help="the maximum epochs (default: the runs')")
    parser.add_argument("--settings", nargs="+", default=["1,3", "3,3", "1,2", "1,4"],
                        help="min_epochs,reduction pairs")
    parser.add_argument("--monitor", default="val_loss",
                        help="the runs' monitor: val_loss (lower is better) or val_accuracy, ...")
    args = parser.parse_args()
    curves = read_curves(args.stage, args.monitor)
    if not curves:
        sys.exit(f"no run with an epochs.csv under {args.stage}")
    budget = args.budget or min(len(curve) for curve in curves.values())
    short = [name for name, curve in curves.items() if len(curve) < budget]
    if short:
        sys.exit(f"runs {', '.join(short)} have fewer than {budget} epochs")
    order = {name: plan_order(name) for name in curves}
    lower = args.monitor == "val_loss"
    full = ranked(list(curves), curves, order, budget, lower)
    value = lambda name: value_at(curves[name], budget, lower)
    print(f"{args.stage}: {len(curves)} runs, budget {budget} epochs, "
          f"full grid {len(curves) * budget} epochs")
    print(f"  full grid: winner {full[0]} ({value(full[0]):.4f}); "
          f"top 3: {', '.join(full[:3])}")
    for setting in args.settings:
        min_epochs, reduction = (int(part) for part in setting.split(","))
        if min_epochs >= budget:
            continue
        winner, three, spent = replay(curves, order, budget, min_epochs, reduction, lower)
        kept = "kept" if winner == full[0] else f"LOST (the full grid's is {full[0]})"
        in_top = len(set(three) & set(full[:3]))
        print(f"  min_epochs {min_epochs}, reduction {reduction} (rungs "
              f"{', '.join(map(str, rungs(min_epochs, reduction, budget)))}): winner {winner} "
              f"({value(winner):.4f}), {kept}; {spent} epochs "
              f"({100 * spent / (len(curves) * budget):.0f}%); last three standing: "
              f"{', '.join(three)} ({in_top} of the full grid's top 3)")


if __name__ == "__main__":
    main()
