#!/usr/bin/env bash
# The whole test suite, as CI runs it: format check, clippy with warnings as errors,
# then every test of every crate on both backends (SQLite and PostgreSQL), including
# the end-to-end tests that drive the real `ivan` binary.
#
# Installs and starts what it needs (PostgreSQL) idempotently. Cargo's target dir
# defaults to ~/.cache/ivan-target so repeated runs (and CI on a fresh clone) reuse
# earlier builds.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ivan-target}"
export IVAN_TEST_PG="${IVAN_TEST_PG:-postgres://postgres@127.0.0.1:5432/postgres}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }

step "PostgreSQL"
ops/ensure-postgres.sh

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build the ivan binary the end-to-end tests spawn"
cargo build --locked --bin ivan

step "tests (unit, store tests on both backends, end-to-end)"
cargo test --workspace --locked --no-fail-fast
