#!/usr/bin/env bash
# 16 `--shard K/16` processes started at the same instant on a fresh out/, ROUNDS times,
# as a SLURM array starts its tasks; prints how many rounds and processes failed, and
# each distinct error. The closing note of the reliability round compares binaries with
# it; tests/races.rs checks the same race on toy data in CI.
#
#   bench/shard_race.sh BINARY ROUNDS [DATA_DIR]    (DATA_DIR default ../shared/data)
set -euo pipefail
binary=$(realpath "$1")
rounds=$2
data=$(realpath "${3:-$(dirname "$0")/../../shared/data}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
cat >study.yaml <<'YAML'
dataset: {name: bloodmnist, train_fraction: 0.02}
defaults: {epochs: 1, seed: 0, batch_size: 256}
stages:
  - name: width
    model: {kind: mlp, hidden: 4}
    grid: {hidden: [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]}
  - name: rate
    from: width
    grid: {learning_rate: [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.1, 0.11, 0.12, 0.13, 0.14, 0.15, 0.16]}
YAML
failed=0
bad_rounds=0
for round in $(seq 1 "$rounds"); do
    rm -rf out gate
    mkdir gate
    for k in $(seq 0 15); do
        # A claim timeout of 20 s bounds the wait of processes whose stage lost a run.
        (while [ ! -e gate/go ]; do sleep 0.001; done
         exec "$binary" study.yaml --device cpu --threads 1 --data-dir "$data" \
             --shard "$k/16" --claim-timeout 20 >"log-$k" 2>&1) &
    done
    sleep 0.5
    touch gate/go
    wait || true
    in_round=$(grep -l '^error' log-* | wc -l || true)
    grep -h '^error' log-* >>errors.txt || true
    failed=$((failed + in_round))
    if [ "$in_round" -gt 0 ]; then bad_rounds=$((bad_rounds + 1)); fi
done
echo "$rounds rounds: $bad_rounds with a failure, $failed of $((rounds * 16)) processes failed"
if [ -s errors.txt ]; then sort errors.txt | uniq -c; fi
