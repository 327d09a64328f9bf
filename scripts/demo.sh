#!/usr/bin/env bash
# `make demo`: the whole pipeline, live, on this machine.
#
#   1. starts the local stack (PostgreSQL, Tansu, moto) unless it runs
#   2. builds the three functions and serves them with `cargo lambda watch`
#   3. `logpipe-dev demo`: invokes `produce` every few seconds (one run with
#      an injected error burst), runs the ingest and detect event source
#      mappings (from infra/template.yaml) with the local ESM runner, shows
#      progress live, then a summary
#   4. stops everything it started — also on Ctrl-C or failure
#
# Knobs: DEMO_SECONDS (default 60), DEMO_INTERVAL (5), DEMO_COUNT (400 records
# per run), KEEP_STACK=1 (leave the stack running for `make health`, psql …),
# DASHBOARD=1 (the local dashboard from the start, refreshing live; after the
# summary it stays up, with the stack, until Ctrl-C; DASHBOARD_PORT, default
# 8090, 0 = any free port).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export PATH="$root/.venv/bin:$HOME/.cargo/bin:$PATH"
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

seconds="${DEMO_SECONDS:-60}"
interval="${DEMO_INTERVAL:-5}"
count="${DEMO_COUNT:-400}"
work="$root/target/demo"
# Where cargo puts the binaries built below (CARGO_TARGET_DIR honoured).
bin="${CARGO_TARGET_DIR:-$root/target}/debug"
mkdir -p "$work"
watch_log="$work/functions.log"
started_at=$(date +%s)

watch_pgid=""
stack_started=""
dashboard_pid=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$dashboard_pid" ]; then
    say "stopping the dashboard"
    kill -TERM "$dashboard_pid" 2>/dev/null || true
    wait "$dashboard_pid" 2>/dev/null || true
  fi
  if [ -n "$watch_pgid" ]; then
    say "stopping cargo lambda watch"
    # Its function processes run in the same session: kill the whole group,
    # and anything left below it.
    kill -TERM -- "-$watch_pgid" 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 -- "-$watch_pgid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$watch_pgid" 2>/dev/null || true
    pkill -KILL -s "$watch_pgid" 2>/dev/null || true
  fi
  if [ -n "$stack_started" ] && [ "${KEEP_STACK:-}" != 1 ]; then
    say "stopping the local stack"
    cargo run -q -p logpipe-devstack --bin logpipe-dev -- down || true
  fi
  say "demo finished in $(( $(date +%s) - started_at )) s"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 1. A fresh stack: records and consumer groups of earlier runs would mix
# into what the demo shows.
if [ -f "${LOGPIPE_STACK_DIR:-$root/.local/stack}/state.json" ]; then
  say "restarting the local stack for a clean run"
  cargo run -q -p logpipe-devstack --bin logpipe-dev -- down
fi
stack_started=1
say "starting the local stack (PostgreSQL, Tansu, moto)"
eval "$(cargo run -q -p logpipe-devstack --bin logpipe-dev -- up)"
# The broker starts empty; the database keeps its files: empty the tables.
# TRUNCATE is the owner's (the functions' DATABASE_URL login has DML only).
psql "${DATABASE_OWNER_URL:-$DATABASE_URL}" -q -X -v ON_ERROR_STOP=1 \
  -c 'TRUNCATE logs, ingest_progress, detect_entity_state, detect_clock, detect_outbox' >/dev/null

# 2. The functions. Built first so the first invocations do not wait for it.
say "building the functions (ingest, detect, produce) and the dev CLI"
build=(-p ingest -p detect -p produce -p logpipe-devstack)
[ "${DASHBOARD:-}" = 1 ] && build+=(-p logpipe-dashboard)
cargo build -q "${build[@]}"
dashboard_url=""
if [ "${DASHBOARD:-}" = 1 ]; then
  dashboard_log="$work/dashboard.log"
  DATABASE_URL="$DATABASE_URL" DASHBOARD_PORT="${DASHBOARD_PORT:-8090}" \
    "$bin"/logpipe-dashboard </dev/null >"$dashboard_log" 2>&1 &
  dashboard_pid=$!
  # It prints "dashboard: http://127.0.0.1:PORT/" once it listens.
  for i in $(seq 100); do
    dashboard_url=$(sed -n 's/^dashboard: //p' "$dashboard_log")
    [ -n "$dashboard_url" ] && break
    kill -0 "$dashboard_pid" 2>/dev/null || { cat "$dashboard_log" >&2; die "the dashboard exited"; }
    [ "$i" -lt 100 ] || die "the dashboard did not start within 10 s (log: $dashboard_log)"
    sleep 0.1
  done
  say "dashboard: $dashboard_url (refreshes every 5 s while the demo runs; log: $dashboard_log)"
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
say "serving the functions with cargo lambda watch on 127.0.0.1:$port (log: $watch_log)"
# Demo-sized detection: 10 s windows so the incident is seen within a minute,
# and rate baselines that judge after one window of history (the default, 5
# windows, is more than the incident's run leaves in a one-minute demo).
DATABASE_URL="$DATABASE_URL" \
KAFKA_BOOTSTRAP_SERVERS="$KAFKA_BOOTSTRAP_SERVERS" \
REPORT_BATCH_ITEM_FAILURES=true \
WINDOW_SECONDS=10 \
ALLOWED_LATENESS_SECONDS=5 \
COOLDOWN_WINDOWS=3 \
RATE_WARMUP_WINDOWS=1 \
PRODUCE_SPAN_SECONDS="$interval" \
RUST_LOG="${RUST_LOG:-info}" \
  setsid cargo lambda watch --ignore-changes \
    --invoke-address 127.0.0.1 --invoke-port "$port" \
    </dev/null >"$watch_log" 2>&1 &
watch_pgid=$!
for i in $(seq 300); do
  kill -0 "$watch_pgid" 2>/dev/null || { tail -n 30 "$watch_log" >&2; die "cargo lambda watch exited"; }
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  [ "$i" -lt 300 ] || die "cargo lambda watch did not answer within 60 s"
  sleep 0.2
done

# 3. The live run.
say "running the pipeline for ${seconds} s"
"$bin"/logpipe-dev demo --endpoint "http://127.0.0.1:$port" \
  --seconds "$seconds" --interval "$interval" --count "$count"

say "pipeline health right after the run (logpipe-dev health)"
"$bin"/logpipe-dev health --samples 3 --interval 1 || true

if [ -n "$dashboard_url" ]; then
  say "the dashboard stays up at $dashboard_url with the stack; Ctrl-C stops both"
  # A background job ignores SIGINT in a script: pass Ctrl-C on as SIGTERM
  # and end normally (cleanup stops the stack).
  trap 'kill -TERM "$dashboard_pid" 2>/dev/null || true' INT TERM
  wait "$dashboard_pid" || true
  trap 'exit 130' INT
  trap 'exit 143' TERM
fi
