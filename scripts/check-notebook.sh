#!/usr/bin/env bash
# Executes notebooks/plots.ipynb on the outputs of a seconds-long study of synthetic
# data (notebooks/tiny.yaml), so that a change of the output layout breaks the test run
# instead of the notebook. Installs the notebook's packages (notebooks/requirements.txt)
# into a virtual environment of their own, once.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${CELLNETS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cellnets}
venv="$cache/notebook"
requirements="$repo/notebooks/requirements.txt"

if ! cmp -s "$requirements" "$venv/requirements.txt"; then
    echo "Installing the notebook's packages into $venv ..." >&2
    rm -rf "$venv"
    mkdir -p "$cache"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$venv/requirements.txt"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$venv/bin/python" "$repo/scripts/synthetic_npz.py" "$work/data/synthmnist.npz"

cd "$repo"
cargo build --quiet
cellnets=target/debug/cellnets
"$cellnets" notebooks/tiny.yaml --data-dir "$work/data" --out "$work/out" --device cpu
"$cellnets" report notebooks/tiny.yaml --data-dir "$work/data" --out "$work/out" --device cpu

cd notebooks
CELLNETS_OUT="$work/out" "$venv/bin/jupyter" nbconvert --to notebook --execute \
    --output "$work/plots-executed.ipynb" plots.ipynb
echo "notebooks/plots.ipynb ran on the outputs of notebooks/tiny.yaml" >&2
