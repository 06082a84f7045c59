#!/usr/bin/env python3
"""Compare `cellnets bench` with the PyTorch reference (bench/pytorch_bench.py).

What it measures
----------------
For every repeat r = 1..R and every model m it runs, back to back,

    CELLNETS bench --models m --epochs N --data-dir DIR --device D --optimizer O
    PYTHON bench/pytorch_bench.py --models m --epochs N --data-dir DIR --device D --optimizer O

(cellnets first on odd repeats, PyTorch first on even ones, so slow drift of the
machine's load cancels out).  Both print the same table on stdout:

    model epoch_seconds samples_per_second val_seconds params

Each run's epoch_seconds (median training-epoch time after one warm-up epoch)
and val_seconds (median validation-pass time) are recorded.  At the end it
prints, per model, the min/median seconds of each tool and the ratio
cellnets / PyTorch: "ratio min" is the smallest per-repeat ratio (both times
from the same repeat) and "ratio median" the median of those per-repeat
ratios.  Below 1 means cellnets is faster.  One table covers the training
epoch, a second the validation pass.

How to run
----------
    cargo build --release
    python bench/compare.py --models cnn8x3,mlp256 --epochs 2 --repeats 3 \\
        --data-dir data --device cpu --out bench-results.csv

Options: --models (comma list, default the study's five; resnet9w16 is the fast
recipe's net), --epochs N (default 2), --batch-size B (default 32, both tools),
--repeats R (default 3), --data-dir DIR (default $CELLNETS_DATA_DIR or data),
--device auto|cpu|cuda (default auto), --optimizer sgd|momentum|adam (default sgd;
PyTorch steps with torch.optim's foreach implementation), --threads T (both tools),
--cellnets PATH (default
target/release/cellnets under the repository root), --python PATH (default:
the interpreter running this script), --out FILE (CSV of every measurement:
repeat, model, tool, epoch_seconds, samples_per_second, val_seconds).

Both tools inherit this script's environment, so thread settings such as
OMP_NUM_THREADS apply to both alike.  Subprocess progress (stderr) is passed
through; only stdout is parsed.

Dependencies: the standard library only.  The PyTorch side needs torch and
numpy in --python's interpreter.  The venv that `make` installs for libtorch
(~/.cache/cellnets/torch-<version>, scripts/setup-libtorch.sh) has torch only;
this script adds numpy to it on first use.  Any other interpreter is only
checked, and the error says what to install.
"""

import argparse
import csv
import os
import statistics
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
PYTORCH_BENCH = BENCH_DIR / "pytorch_bench.py"

MODELS = ["mlp256", "mlp4096", "cnn8x3", "cnn64x9", "deep", "resnet9w16"]
DEFAULT_MODELS = MODELS[:5]
TOOLS = ["cellnets", "pytorch"]
HEADER = ["model", "epoch_seconds", "samples_per_second", "val_seconds", "params"]
CSV_FIELDS = ["repeat", "model", "tool", "epoch_seconds", "samples_per_second", "val_seconds"]


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def parse_models(text):
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in MODELS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown model(s) {', '.join(unknown) or '(none)'}; choose from {','.join(MODELS)}"
        )
    return names


def parse_table(stdout, model, tool):
    """Return the row for `model` from a bench table as a dict of floats."""
    lines = [line.split() for line in stdout.splitlines() if line.strip()]
    try:
        start = next(i for i, fields in enumerate(lines) if fields == HEADER)
    except StopIteration:
        raise RuntimeError(
            f"{tool}: no header line {' '.join(HEADER)!r} in its output:\n{stdout}"
        ) from None
    for fields in lines[start + 1 :]:
        if len(fields) == len(HEADER) and fields[0] == model:
            row = dict(zip(HEADER, fields))
            try:
                return {
                    "epoch_seconds": float(row["epoch_seconds"]),
                    "samples_per_second": float(row["samples_per_second"]),
                    "val_seconds": float(row["val_seconds"]),
                }
            except ValueError:
                raise RuntimeError(f"{tool}: malformed row {' '.join(fields)!r}") from None
    raise RuntimeError(f"{tool}: no row for model {model!r} in its output:\n{stdout}")


def run_bench(tool, command, model):
    log(f"$ {' '.join(str(part) for part in command)}")
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        sys.exit(
            f"error: {tool} exited with status {result.returncode}\n"
            f"command: {' '.join(str(part) for part in command)}\nstdout:\n{result.stdout}"
        )
    try:
        return parse_table(result.stdout, model, tool)
    except RuntimeError as error:
        sys.exit(f"error: {error}")


def cellnets_cache():
    """The cache folder of scripts/setup-libtorch.sh, found the same way."""
    if os.environ.get("CELLNETS_CACHE"):
        return Path(os.environ["CELLNETS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "cellnets"


def missing_modules(python):
    needed = ["torch", "numpy"]
    return [
        module
        for module in needed
        if subprocess.run(
            [python, "-c", f"import {module}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ).returncode
        != 0
    ]


def ensure_pytorch_side(python):
    """Make sure `python` can run bench/pytorch_bench.py, before any timing starts.

    numpy is installed only into the libtorch venv of cellnets' own cache, which
    cellnets created and which lacks nothing else; another interpreter belongs to
    the user, so it is left as it is and the error names the command to run.
    """
    missing = missing_modules(python)
    # Not resolved: a venv's python is a link to the system one.
    venv = Path(os.path.abspath(python)).parent.parent
    ours = venv.parent == cellnets_cache() and venv.name.startswith("torch-")
    if missing == ["numpy"] and ours:
        log(f"installing numpy into {venv} (once; pytorch_bench.py reads the npz with it)")
        subprocess.run(
            [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "numpy"]
        )
        missing = missing_modules(python)
    if missing:
        sys.exit(
            f"error: {python} cannot import {' and '.join(missing)}, which "
            f"bench/pytorch_bench.py needs: run `{python} -m pip install {' '.join(missing)}`, "
            "or pass --python with an interpreter that has them"
        )


def fmt_pair(values):
    return f"{min(values):.3f}/{statistics.median(values):.3f}"


def print_summary(title, key, measurements, models, repeats):
    """Print min/median seconds per tool and the per-repeat ratio cellnets / PyTorch."""
    print(f"\n{title} ({key}; ratio = cellnets / pytorch, same repeat)")
    print(
        f"{'model':<10} {'cellnets_s (min/median)':>24} {'pytorch_s (min/median)':>24} "
        f"{'ratio min':>10} {'ratio median':>13}"
    )
    for model in models:
        cellnets = [measurements[(r, model, "cellnets")][key] for r in repeats]
        pytorch = [measurements[(r, model, "pytorch")][key] for r in repeats]
        ratios = [c / p for c, p in zip(cellnets, pytorch) if p > 0]
        ratio_min = f"{min(ratios):.3f}" if ratios else "n/a"
        ratio_median = f"{statistics.median(ratios):.3f}" if ratios else "n/a"
        print(
            f"{model:<10} {fmt_pair(cellnets):>24} {fmt_pair(pytorch):>24} "
            f"{ratio_min:>10} {ratio_median:>13}"
        )


def main():
    parser = argparse.ArgumentParser(
        description="Run cellnets bench and the PyTorch bench interleaved and compare them."
    )
    parser.add_argument("--models", type=parse_models, default=list(DEFAULT_MODELS),
                        help=f"comma-separated subset of {','.join(MODELS)} "
                             f"(default: {','.join(DEFAULT_MODELS)})")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="training batch size for both (default 32, the study's; the "
                             "fast recipe's resnet9w16 trains at 128)")
    parser.add_argument("--epochs", type=int, default=2,
                        help="timed epochs per run, after one warm-up epoch (default 2)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="interleaved repeats of every model (default 3)")
    parser.add_argument("--data-dir", default=os.environ.get("CELLNETS_DATA_DIR", "data"),
                        help="directory holding bloodmnist.npz (default $CELLNETS_DATA_DIR or data)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--optimizer", choices=["sgd", "momentum", "adam"], default="sgd",
                        help="sgd (the study's), momentum (SGD, 0.9) or adam; PyTorch uses "
                             "torch.optim's foreach implementation")
    parser.add_argument("--threads", type=int, default=None,
                        help="libtorch / torch threads for both (default: their default)")
    parser.add_argument("--cellnets", type=Path, default=REPO_ROOT / "target" / "release" / "cellnets",
                        help="cellnets binary (default: target/release/cellnets in the repository)")
    parser.add_argument("--python", default=sys.executable,
                        help="Python interpreter with torch and numpy (default: this one)")
    parser.add_argument("--out", type=Path, default=None,
                        help="write every raw measurement to this CSV file")
    args = parser.parse_args()
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")

    cellnets = args.cellnets.resolve()
    if not cellnets.is_file():
        sys.exit(
            f"error: cellnets binary not found at {cellnets}; "
            "build it with cargo build --release (or pass --cellnets PATH)"
        )
    if not os.access(cellnets, os.X_OK):
        sys.exit(f"error: {cellnets} is not executable")
    npz = Path(args.data_dir) / "bloodmnist.npz"
    if not npz.is_file():
        sys.exit(f"error: {npz} not found (pass --data-dir or set CELLNETS_DATA_DIR)")

    ensure_pytorch_side(args.python)

    common = ["--epochs", str(args.epochs), "--data-dir", str(args.data_dir), "--device", args.device,
              "--optimizer", args.optimizer, "--batch-size", str(args.batch_size)]
    if args.threads is not None:
        common += ["--threads", str(args.threads)]

    def command(tool, model):
        if tool == "cellnets":
            return [str(cellnets), "bench", "--models", model, *common]
        return [args.python, str(PYTORCH_BENCH), "--models", model, *common]

    csv_file = writer = None
    if args.out is not None:
        csv_file = open(args.out, "w", newline="")
        writer = csv.DictWriter(csv_file, fieldnames=CSV_FIELDS)
        writer.writeheader()
        csv_file.flush()

    measurements = {}
    repeats = list(range(1, args.repeats + 1))
    try:
        for r in repeats:
            # Odd repeats run cellnets first, even ones PyTorch first.
            order = TOOLS if r % 2 == 1 else TOOLS[::-1]
            for model in args.models:
                for tool in order:
                    log(f"[repeat {r}/{args.repeats}] {model}: {tool}")
                    row = run_bench(tool, command(tool, model), model)
                    measurements[(r, model, tool)] = row
                    log(
                        f"[repeat {r}/{args.repeats}] {model} {tool}: "
                        f"epoch {row['epoch_seconds']:.3f}s, val {row['val_seconds']:.3f}s"
                    )
                    if writer is not None:
                        writer.writerow({"repeat": r, "model": model, "tool": tool, **row})
                        csv_file.flush()
    finally:
        if csv_file is not None:
            csv_file.close()

    print(
        f"cellnets vs PyTorch: {args.repeats} repeat(s), {args.epochs} timed epoch(s) per run, "
        f"device {args.device}"
    )
    print_summary("Training epoch", "epoch_seconds", measurements, args.models, repeats)
    print_summary("Validation pass", "val_seconds", measurements, args.models, repeats)
    if args.out is not None:
        print(f"\nraw measurements: {args.out}")


if __name__ == "__main__":
    main()
