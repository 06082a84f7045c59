#!/usr/bin/env bash
# Installs libtorch (the PyTorch wheel tch is built against) into a cache outside the
# clone, once, and points the clone's git-ignored `.libtorch` link at it. Cargo reads
# LIBTORCH=.libtorch from .cargo/config.toml; a LIBTORCH set in the environment wins.
set -euo pipefail

# Must match the PyTorch version the pinned tch/torch-sys expects (Cargo.toml).
TORCH_VERSION=2.11.0

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${CELLNETS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cellnets}
venv="$cache/torch-$TORCH_VERSION"

torch_dir() { "$venv/bin/python" -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>/dev/null; }

if [ -n "${LIBTORCH:-}" ]; then
    echo "LIBTORCH is set ($LIBTORCH): using it, nothing to install." >&2
    exit 0
fi

if ! dir=$(torch_dir) || [ ! -f "$venv/.complete" ]; then
    echo "Installing PyTorch $TORCH_VERSION (libtorch for tch, ~5 GB) into $venv ..." >&2
    rm -rf "$venv"
    mkdir -p "$cache"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "torch==$TORCH_VERSION"
    touch "$venv/.complete"
    dir=$(torch_dir)
fi

ln -sfn "$dir" "$repo/.libtorch"
echo "libtorch: $dir" >&2
