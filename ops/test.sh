#!/usr/bin/env bash
# The whole test suite, as CI runs it: format check, clippy with warnings as errors,
# then every test of every crate on both backends (SQLite and PostgreSQL), including
# the end-to-end tests that drive the real `ivan` binary.
#
# Installs and starts what it needs idempotently: PostgreSQL, xmlsec1, openssl,
# chromium and chromium-driver (Debian packages), and the Python test
# peers (moto, an S3 emulator the tests start themselves) in a virtualenv, and promtool
# (unpacked from Debian's prometheus package) for the alert rules. Cargo's target dir
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

step "Debian tools the tests use: xmlsec1 (independent XML-DSig signer/verifier), openssl"
missing=()
command -v xmlsec1 >/dev/null || missing+=(xmlsec1)
command -v openssl >/dev/null || missing+=(openssl)
if ((${#missing[@]})); then
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

step "Headless Chromium and chromedriver (the portal's browser tests, tests/src/browser.rs)"
if ! command -v chromedriver >/dev/null || [ ! -x /usr/lib/chromium/chromium ]; then
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi

step "Python test peers (ops/test-requirements.txt) in a virtualenv"
venv="${IVAN_VENV:-$HOME/.cache/ivan-venv}"
stamp="$venv/.requirements"
if ! cmp -s ops/test-requirements.txt "$stamp" 2>/dev/null; then
  if ! python3 -m venv "$venv" 2>/dev/null; then
    # Debian's python3 needs python3-venv for `-m venv`.
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check -r ops/test-requirements.txt
  cp ops/test-requirements.txt "$stamp"
fi
export PATH="$venv/bin:$PATH"

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "module layering of server (ops/layers.py)"
python3 ops/layers.py

step "one owner per table (ops/owners.py)"
python3 ops/owners.py

step "Prometheus alert rules (promtool)"
# Only promtool, unpacked from Debian's prometheus package into a cache dir: the
# package is never installed, so no Prometheus server is set up or started here.
promtool_dir="${IVAN_TEST_PROMTOOL_DIR:-$HOME/.cache/ivan-promtool}"
promtool=$(command -v promtool || echo "$promtool_dir/promtool")
if [ ! -x "$promtool" ]; then
  deb_dir=$(mktemp -d)
  chown _apt "$deb_dir" 2>/dev/null || true # apt-get download (as root) fetches as _apt
  if DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    (cd "$deb_dir" && apt-get download -qq prometheus) &&
    mkdir -p "$promtool_dir" &&
    dpkg-deb --fsys-tarfile "$deb_dir"/prometheus_*.deb |
    tar -xO ./usr/bin/promtool >"$deb_dir/promtool"; then
    install -m 0755 "$deb_dir/promtool" "$promtool_dir/promtool"
  fi
  rm -rf "$deb_dir"
fi
if [ -x "$promtool" ]; then
  "$promtool" check rules ops/prometheus/alerts.yml
  "$promtool" test rules ops/prometheus/alerts_test.yml
else
  echo "promtool unavailable (Debian package prometheus could not be fetched): alert rules not checked, skipped"
fi

step "build the ivan binary the end-to-end tests spawn"
cargo build --locked --bin ivan

step "tests (unit, store tests on both backends, end-to-end)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log" || status=$?
# One closing line for the whole run (cargo prints one per test binary).
awk '/^test result:/ { p += $4; f += $6 } END { printf "\ntests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
