#!/usr/bin/env bash
# Restore drill: a synthetic multi-year record (default 1,000,000 filings over 3
# years following the setup, i.e. ahead of the clock, document sizes divided by SCALE), backed up with `ivan backup create` while
# `ivan serve` runs on it, verified with `ivan backup verify`, restored with
# `ivan restore` into a fresh PostgreSQL database and data dir (which ends with the
# full log verification), then timings, bytes and the extrapolation to a ten-year
# volume at realistic sizes. Results go into BENCHMARKS.md by hand, with this command.
#
#   ops/drills/restore-drill.sh                     # the full drill (about 35 minutes on 2 cores,
#                                                   # plus the clean-up of 4 M files)
#   FILINGS=20000 ops/drills/restore-drill.sh       # a quick rehearsal
#
# Settings (environment): SKIP_VERIFY=1 skips `ivan backup verify`; REUSE=1 keeps
# the record a previous run left with KEEP=1 (same DRILL_DIR) and redoes backup and
# restore only, e.g. to measure a change to them; DROP_SOURCE=1 removes the record
# (data dir and database) once it is backed up, before the restore (for a disk that
# cannot hold record, backup and restored copy at once; REUSE is then impossible); FILINGS (1000000), YEARS (3), SCALE (4), TEN_YEAR_FILINGS
# (FILINGS / YEARS * 10: the same yearly rate for ten years), DRILL_DIR
# (~/.cache/ivan-drill; wiped at the start, removed at the end unless KEEP=1),
# PG (postgres://postgres@127.0.0.1:5432: databases ivan_drill_src and
# ivan_drill_restored are dropped and created).
#
# Disk at the defaults: the record and the restored copy about 30 GB each
# (4,000,000 small files, ~26 GB on ext4, plus ~5 GB of database), the backup about
# 10 GB (packs 5.6 GB, database dump 4.2 GB); with DROP_SOURCE=1 the record is gone
# before the restored copy is written.
set -euo pipefail
cd "$(dirname "$0")/../.."

FILINGS="${FILINGS:-1000000}"
YEARS="${YEARS:-3}"
SCALE="${SCALE:-4}"
TEN_YEAR_FILINGS="${TEN_YEAR_FILINGS:-$((FILINGS / YEARS * 10))}"
WORK="${DRILL_DIR:-$HOME/.cache/ivan-drill}"
PG="${PG:-postgres://postgres@127.0.0.1:5432}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ivan-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*" >&2; }

step "PostgreSQL"
ops/ensure-postgres.sh

step "release build of ivan and the volume generator"
cargo build --release --locked -p ivan-server -p ivan-bench --bin ivan --bin synth-volume
ivan="$CARGO_TARGET_DIR/release/ivan"
synth="$CARGO_TARGET_DIR/release/synth-volume"

reuse=0
if [ "${REUSE:-0}" = 1 ] && [ -s "$WORK/synth.json" ] && [ -d "$WORK/src" ]; then
  reuse=1
  step "reusing the record in $WORK (REUSE=1); fresh backup, restored database and data dir"
  rm -rf "$WORK/backup" "$WORK/restored" "$WORK/verify.seconds"
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS ivan_drill_restored WITH (FORCE)" \
    -c "CREATE DATABASE ivan_drill_restored"
else
  step "fresh work dir $WORK and databases"
  rm -rf "$WORK"
  mkdir -p "$WORK"
  for db in ivan_drill_src ivan_drill_restored; do
    psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
  done
fi
cleanup() {
  [ -n "${serve_pid:-}" ] && kill "$serve_pid" 2>/dev/null || true
  if [ "${KEEP:-0}" != 1 ]; then
    rm -rf "$WORK"
    for db in ivan_drill_src ivan_drill_restored; do
      psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
    done
  fi
}
trap cleanup EXIT

src() { IVAN_DATA_DIR="$WORK/src" IVAN_DATABASE_URL="$PG/ivan_drill_src" IVAN_LOG=warn "$ivan" "$@"; }

if [ "$reuse" = 0 ]; then
  step "schema, employer, test PKI and trust through the CLI"
  src migrate >/dev/null
  "$ivan" dev keys "$WORK/pki" >/dev/null
  employer=$(src admin employer add --name "Drill Employer" --registration-number 12345678 --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  src admin ca add "$WORK/pki/ca.pem" >/dev/null
  src admin crl add "$WORK/pki/crl.pem" >/dev/null
  src admin cert add --employer "$employer" "$WORK/pki/employer.pem" >/dev/null

  step "synthetic volume: $FILINGS filings over $YEARS years, sizes / $SCALE"
  "$synth" --database-url "$PG/ivan_drill_src" --data-dir "$WORK/src" \
    --filings "$FILINGS" --years "$YEARS" --scale "$SCALE" >"$WORK/synth.json.partial"
  sync
  mv "$WORK/synth.json.partial" "$WORK/synth.json"
fi
cat "$WORK/synth.json" >&2

step "ivan serve on the record while the backup runs"
IVAN_DATA_DIR="$WORK/src" IVAN_DATABASE_URL="$PG/ivan_drill_src" IVAN_LOG=warn \
  "$ivan" serve --listen 127.0.0.1:0 >"$WORK/serve.out" 2>"$WORK/serve.err" &
serve_pid=$!
for _ in $(seq 1 600); do
  grep -q "listening on" "$WORK/serve.out" 2>/dev/null && break
  kill -0 "$serve_pid" 2>/dev/null || { cat "$WORK/serve.err" >&2; exit 1; }
  sleep 0.1
done
grep -q "listening on" "$WORK/serve.out" || { echo "ivan serve did not start" >&2; exit 1; }

step "ivan backup create"
src backup create "$WORK/backup" --json >"$WORK/backup.json"
kill "$serve_pid"
wait "$serve_pid" 2>/dev/null || true
serve_pid=
if [ "${DROP_SOURCE:-0}" = 1 ]; then
  # The restore reads the backup only; on a small disk the record can go first.
  step "removing the source record (DROP_SOURCE=1)"
  rm -rf "$WORK/src"
  psql -q "$PG/postgres" -c "DROP DATABASE IF EXISTS ivan_drill_src WITH (FORCE)"
fi
# Restore reads the backup cold when the page cache can be dropped (root).
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null && echo dropped || echo kept; }

if [ "${SKIP_VERIFY:-0}" != 1 ]; then
  step "ivan backup verify"
  drop_caches >/dev/null
  start=$(date +%s.%N)
  "$ivan" backup verify "$WORK/backup" --json >"$WORK/verify.json"
  end=$(date +%s.%N)
  python3 -c "print(round($end - $start, 1))" >"$WORK/verify.seconds"
fi

step "ivan restore into a fresh database and data dir"
cache_restore=$(drop_caches)
IVAN_DATA_DIR="$WORK/restored" IVAN_DATABASE_URL="$PG/ivan_drill_restored" IVAN_LOG=warn \
  "$ivan" restore "$WORK/backup" --json >"$WORK/restore.json"

step "disk bandwidth for the extrapolation"
# 2 GB written (fdatasync) and read back cold where caches can be dropped; SHA-256
# with Python's hashlib (OpenSSL, the same CPU instructions ivan's sha2 uses).
dd if=/dev/zero of="$WORK/dd.tmp" bs=8M count=256 conv=fdatasync 2>"$WORK/dd.write"
sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
dd if="$WORK/dd.tmp" of=/dev/null bs=8M 2>"$WORK/dd.read"
rm -f "$WORK/dd.tmp"
WORK="$WORK" python3 - <<'PY'
import hashlib, json, os, re, time
w = os.environ["WORK"]
def rate(f):
    m = re.search(r"^(\d+) bytes.* copied, ([\d.]+) s", open(f).read(), re.M)
    return int(m.group(1)) / float(m.group(2))
buf = os.urandom(64 << 20)
t = time.perf_counter()
for _ in range(16):
    hashlib.sha256(buf).digest()
sha = 16 * len(buf) / (time.perf_counter() - t)
json.dump({"write": rate(f"{w}/dd.write"), "read": rate(f"{w}/dd.read"), "sha256": sha},
          open(f"{w}/disk.json", "w"))
PY

step "results"
WORK="$WORK" TEN_YEAR_FILINGS="$TEN_YEAR_FILINGS" CACHE="$cache_restore" python3 - <<'EOF'
import json, os
w = os.environ["WORK"]
synth = json.load(open(f"{w}/synth.json"))
b = json.load(open(f"{w}/backup.json"))
r = json.load(open(f"{w}/restore.json"))
verify_s = (float(open(f"{w}/verify.seconds").read())
            if os.path.exists(f"{w}/verify.seconds") else None)
ten = int(os.environ["TEN_YEAR_FILINGS"])
n = synth["filings"]
gb = lambda x: x / 1e9
print(f"volume: {n:,} filings over {synth['years']} years, sizes / {synth['scale']}: "
      f"{synth['log_entries']:,} log entries, {synth['checkpoints']:,} checkpoints, "
      f"{synth['originals']:,} originals, {gb(synth['originals_bytes']):.2f} GB "
      f"({gb(synth['originals_bytes_unscaled']):.2f} GB at real sizes); generated in {synth['seconds']} s")
print(f"backup create (service running): {b['total_seconds']:.0f} s = database {b['db_seconds']:.0f} s "
      f"({gb(b['db_bytes']):.2f} GB) + originals {b['originals_seconds']:.0f} s "
      f"({b['originals_copied']:,} files, {gb(b['bytes_copied']):.2f} GB)")
if verify_s is not None:
    print(f"backup verify (every file re-hashed): {verify_s:.0f} s")
print(f"restore: {r['total_seconds']:.0f} s = check {r['check_seconds']:.0f} s, then database {r['db_seconds']:.0f} s "
      f"({r['rows']:,} rows in {r['tables']} tables) beside originals {r['originals_seconds']:.0f} s "
      f"({r['originals']:,} files, {gb(r['bytes']):.2f} GB); log verify: entries {r['log_seconds']:.0f} s after the database, "
      f"originals {r['verify_seconds']:.0f} s after the copy "
      f"({r['log_entries']:,} entries, {r['checkpoints']:,} checkpoints, {r['originals_verified']:,} originals); "
      f"page cache {os.environ['CACHE']}")
# Ten years at real sizes. Everything counted per item (rows, entries, files) scales
# with the number of filings: the run's phases times k. The bytes the run did not
# have (it divided document sizes by SCALE) are charged at this disk's measured
# bandwidth: read from the backup, written to the target, read again by the final
# verification, and hashed twice (copy and verification).
k = ten / n
extra = k * (synth["originals_bytes_unscaled"] - synth["originals_bytes"])
bw = json.load(open(f"{w}/disk.json"))
per_byte = 2 / bw["read"] + 1 / bw["write"] + 2 / bw["sha256"]
items = k * r["total_seconds"]
bytes_part = extra * per_byte
est = items + bytes_part
full_bytes = k * synth["originals_bytes_unscaled"] + k * r["db_bytes"]
print(f"disk: write {bw['write'] / 1e6:.0f} MB/s, read {bw['read'] / 1e6:.0f} MB/s, "
      f"SHA-256 {bw['sha256'] / 1e6:.0f} MB/s (measured in {w})")
print(f"ten years ({ten:,} filings, real sizes): ~{gb(full_bytes):.0f} GB "
      f"(originals {gb(k * synth['originals_bytes_unscaled']):.0f} GB + database {gb(k * r['db_bytes']):.0f} GB); "
      f"restore ~{est / 60:.0f} min = {items / 60:.0f} min for the items (this run x {k:.2f}) "
      f"+ {bytes_part / 60:.0f} min for {gb(extra):.0f} GB more bytes; "
      f"{est / 60 / max(1e-9, gb(full_bytes) / 100):.1f} min per 100 GB "
      f"(target: 15 min per 100 GB; 8 h in all)")
EOF
