#!/usr/bin/env bash
# The GPU path in one command: every figure of docs/gpu.md's check, in one results file.
#
#   scripts/gpu-check.sh [--device cuda|cpu] [--short] [--results DIR] [--only SECTIONS]
#
# Needs the release binary built on any machine with the same libtorch
# (`cargo build --release`) and data/bloodmnist.npz (the 28x28 set; the 64x64 stage is
# left out). Where the binary's libtorch is not where it was built (a GPU machine whose
# torch comes with its python3), LD_LIBRARY_PATH is pointed at that torch's lib folder.
#
#   --device   cuda (default) or cpu, to try the script where there is no GPU
#   --short    a few epochs and small grids: minutes on a laptop's CPU
#   --results  where gpu-check.txt and the runs go (default: $OUT when set, else
#              out/gpu-check): a new or empty folder, or an earlier check's, which is
#              emptied first
#   --only     some of: env tiny bench precision curves grid quick (default: all)
#
# Sized for one H200 in about 7 minutes at full settings; each section prints its wall
# time, so a rerun can leave out what is done.
set -euo pipefail

device=cuda
short=0
results=${OUT:-out/gpu-check}
sections="env tiny bench precision curves grid quick"
while (($#)); do
    case $1 in
    --device) device=$2; shift 2 ;;
    --short) short=1; shift ;;
    --results) results=$2; shift 2 ;;
    --only) sections=$2; shift 2 ;;
    *) echo "gpu-check.sh: unknown argument $1 (see the comment at the top)" >&2; exit 2 ;;
    esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
binary=$root/target/release/cellnets
data=$root/data
[[ -x $binary ]] || { echo "no $binary: run \`cargo build --release\` first" >&2; exit 1; }
[[ -f $data/bloodmnist.npz ]] || {
    echo "no $data/bloodmnist.npz: copy it there (e.g. from ../shared/data) first" >&2
    exit 1
}
if torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null); then
    export LD_LIBRARY_PATH=$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi

mkdir -p "$results"
results=$(cd "$results" && pwd)
# Only an earlier check's folder is emptied: --results out must not wipe a study.
if [[ -n $(ls -A "$results") && ! -f $results/gpu-check.txt ]]; then
    echo "$results holds other files: give --results a new or empty folder" >&2
    exit 1
fi
find "$results" -mindepth 1 -delete
report=$results/gpu-check.txt
runs=$results/runs
mkdir -p "$runs"

say() { echo "$*" | tee -a "$report"; }
# Runs a command with its output in the report, and says how long it took.
timed() {
    local start=$SECONDS status=0
    say "\$ ${*/#$binary/cellnets}"
    "$@" >>"$report" 2>&1 || status=$?
    say "($((SECONDS - start)) s, exit $status)"
    return $status
}
wanted() { [[ " $sections " == *" $1 "* ]]; }
section() { say; say "## $1"; }
cellnets() { timed "$binary" "$@" --data-dir "$data"; }

# A manifest of one stage: name, model, training and grid as YAML flow maps.
manifest() {
    cat >"$1" <<EOF
dataset: {name: bloodmnist, image_size: 28, train_fraction: 0.7}
defaults: {epochs: 1, batch_size: 32, optimizer: sgd, monitor: val_loss, seed: 0}
stages:
  - name: $2
    model: $3
    training: $4
${5:+    grid: $5}
EOF
}

# Per-epoch numbers of two runs of the same settings side by side, and how far apart.
side_by_side() {
    python3 - "$1" "$2" "$3" "$4" <<'EOF' | tee -a "$report"
import csv, sys
a_name, a_path, b_name, b_path = sys.argv[1:]
a, b = (list(csv.DictReader(open(path))) for path in (a_path, b_path))
columns = ["train_loss", "train_accuracy", "val_loss", "val_accuracy"]
print("epoch " + " ".join(f"{c}:{a_name} {c}:{b_name}" for c in columns))
worst = dict.fromkeys(columns, 0.0)
for row_a, row_b in zip(a, b):
    cells = []
    for c in columns:
        x, y = float(row_a[c]), float(row_b[c])
        worst[c] = max(worst[c], abs(x - y))
        cells += [f"{x:.5f}", f"{y:.5f}"]
    print(row_a["epoch"], " ".join(cells))
print("largest difference: " + ", ".join(f"{c} {v:.2e}" for c, v in worst.items()))
identical = all(row_a[c] == row_b[c] for row_a, row_b in zip(a, b) for c in columns)
print("bit-identical" if identical else "not bit-identical")
EOF
}

say "# cellnets GPU check, $(date -u '+%Y-%m-%d %H:%M UTC'), --device $device$( ((short)) && echo ' --short')"

if wanted env; then
    section "Machine"
    say "host $(hostname), $(nproc) cores"
    if command -v nvidia-smi >/dev/null; then
        timed nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    else
        say "no nvidia-smi"
    fi
    say "python3 torch: $(python3 -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1 | tail -1)"
    say "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
    # A bench of one epoch says which device libtorch uses and how many CUDA devices it sees.
    cellnets bench --device "$device" --models mlp256 --epochs 1
fi

if wanted tiny; then
    section "A tiny run: its numbers must be finite"
    manifest "$runs/tiny.yaml" tiny "{kind: mlp, hidden: 64}" "{epochs: 2}"
    cellnets "$runs/tiny.yaml" --out "$runs/tiny" --device "$device"
    epochs=$runs/tiny/tiny/run/epochs.csv
    say "$(cat "$epochs")"
    if awk -F, 'NR > 1 { for (i = 4; i <= 7; i++) if ($i !~ /^-?[0-9.]+(e-?[0-9]+)?$/) bad = 1 } END { exit bad }' "$epochs"; then
        say "tiny run: every loss and accuracy is a finite number"
    else
        say "tiny run: NOT FINITE"
        exit 1
    fi
fi

if wanted bench; then
    section "cellnets bench: seconds per training epoch and per validation pass"
    if ((short)); then
        cellnets bench --device "$device" --models mlp256,cnn8x3 --epochs 1
    else
        cellnets bench --device "$device" --models mlp256,mlp4096,cnn8x3,cnn64x9,deep,resnet18 --epochs 3
    fi
fi

if wanted precision; then
    section "Precision switches (off by default): each against float32"
    models=cnn64x9,deep,resnet18 epochs=2
    ((short)) && models=cnn8x3 epochs=1
    for switches in "" "--tf32" "--cudnn-benchmark" "--tf32 --cudnn-benchmark" "--bf16"; do
        # shellcheck disable=SC2086 # the switches are separate words
        cellnets bench --device "$device" --models $models --epochs $epochs $switches
    done
fi

if wanted curves; then
    section "The CNN 64x9x9 on the CPU and on --device $device, same seed"
    epochs=10
    ((short)) && epochs=2
    manifest "$runs/curves.yaml" cnn64x9 "{kind: cnn, kernels: 64, kernel_size: 9, pool: max}" "{epochs: $epochs}"
    # Two out folders, so that with --device cpu the second run trains again.
    cellnets "$runs/curves.yaml" --out "$runs/curves-on-cpu" --device cpu
    cellnets "$runs/curves.yaml" --out "$runs/curves-on-device" --device "$device"
    side_by_side cpu "$runs/curves-on-cpu/cnn64x9/run/epochs.csv" \
        "$device" "$runs/curves-on-device/cnn64x9/run/epochs.csv"
fi

if wanted grid; then
    grid="{kernels: [8, 16, 32, 64, 128], kernel_size: [3, 5, 7, 9]}" epochs=3 jobs="1 4 8"
    ((short)) && grid="{kernels: [8, 16], kernel_size: [3, 5]}" epochs=1 jobs="1 2"
    section "The study's CNN grid $grid at $epochs epochs: wall time by --jobs"
    manifest "$runs/grid.yaml" cnn_grid "{kind: cnn, kernels: 8, kernel_size: 3, pool: max}" "{epochs: $epochs}" "$grid"
    for j in $jobs; do
        cellnets "$runs/grid.yaml" --out "$runs/grid-jobs$j" --device "$device" --jobs "$j"
        say "jobs $j: winner $(sed -n 's/^run: //p' "$runs/grid-jobs$j/cnn_grid/winner.yaml")"
    done
fi

if wanted quick; then
    section "experiments/quick.yaml, stage by stage (cnn_64 left out: its 64x64 data is not here)"
    stages=$(sed -n 's/^  - name: //p' "$root/experiments/quick.yaml" | grep -vx cnn_64)
    ((short)) && stages="hidden cnn_grid cnn_best"
    for stage in $stages; do
        cellnets only "$stage" --manifest "$root/experiments/quick.yaml" --out "$runs/quick" --device "$device"
    done
    say "per stage, the runs' own seconds (summary.csv) and test accuracies:"
    for stage in $stages; do
        say "$(python3 - "$runs/quick/$stage/summary.csv" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
seconds = sum(float(row["seconds"]) for row in rows)
tests = " ".join(f'{row["run"]}={float(row["test_accuracy"]):.4f}' for row in rows)
print(f'{rows[0]["stage"]}: {len(rows)} runs, {seconds:.1f} s of training; test accuracy {tests}')
EOF
)"
    done
fi

say
say "done: $report"
