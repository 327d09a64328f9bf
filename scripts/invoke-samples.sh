#!/usr/bin/env bash
# Invokes the ingest, detect, produce and maintain functions locally with
# every sample event in events/ingest, events/detect, events/produce and
# events/maintain; for ingest,
# events/ingest/ and checks its summary against <name>.expected.json.
#
#   scripts/invoke-samples.sh            (what `make invoke` runs)
#
# - Needs DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS (the local stack). When
#   they are unset the stack is started (`logpipe-dev up`); a stack started
#   here is stopped again on exit unless KEEP_STACK=1.
# - Runs the function under `cargo lambda watch` (the project venv's
#   cargo-lambda, installed by scripts/bootstrap.sh lambda if missing), in its
#   own process group that is killed on exit, failure or Ctrl-C.
# - TRUNCATEs logs and ingest_progress before each ingest sample, so the
#   counts are the ones of a first invocation (the expected files assume an
#   empty database, and the AWS developer guide's examples all hold the same
#   record: mytopic, partition 0, offset 15); the detect tables once, at
#   the start (the detect samples build on each other in name order).
# - Exits non-zero when any sample's counts differ or batchItemFailures is
#   not empty.
#
# Environment knobs: INVOKE_TIMEOUT (seconds for one invoke, default 1800:
# the first one compiles the function), WATCH_LOG (default
# target/invoke-samples/watch.log), KEEP_STACK=1.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

export PATH="$root/.venv/bin:$HOME/.cargo/bin:$PATH"
invoke_timeout="${INVOKE_TIMEOUT:-1800}"
work="$root/target/invoke-samples"
mkdir -p "$work"
watch_log="${WATCH_LOG:-$work/watch.log}"

command -v python3 >/dev/null || die "python3 is required"
command -v psql >/dev/null || die "psql is required (apt-get install postgresql-client)"
if [ ! -x "$root/.venv/bin/cargo-lambda" ]; then
  say "cargo-lambda missing from .venv; running scripts/bootstrap.sh lambda"
  scripts/bootstrap.sh lambda
fi

watch_pgid=""
invoke_pid=""
stack_started=""
# Every process below $1 (cargo lambda watch starts the function, and the
# cargo that builds it, in a session of its own: killing its group alone
# could leave them behind).
descendants() {
  ps -eo pid=,ppid= | awk -v root="$1" '
    { parent[$1] = $2 }
    END {
      found[root] = 1
      do {
        more = 0
        for (p in parent) if (!(p in found) && (parent[p] in found)) { found[p] = 1; more = 1 }
      } while (more)
      for (p in found) if (p != root) print p
    }'
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$invoke_pid" ]; then
    kill -TERM "$invoke_pid" 2>/dev/null || true
  fi
  if [ -n "$watch_pgid" ] && kill -0 -- "-$watch_pgid" 2>/dev/null; then
    local others
    others=$(descendants "$watch_pgid")
    kill -TERM -- "-$watch_pgid" 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 -- "-$watch_pgid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$watch_pgid" 2>/dev/null || true
    for pid in $others; do
      kill -KILL "$pid" 2>/dev/null || true
    done
  fi
  if [ -n "$stack_started" ] && [ "${KEEP_STACK:-}" != 1 ]; then
    say "stopping the local stack started by this script"
    cargo run -q -p logpipe-devstack --bin logpipe-dev -- down || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# 1. The local stack.
if [ -z "${DATABASE_URL:-}" ] || [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
  if [ ! -f "${LOGPIPE_STACK_DIR:-$root/.local/stack}/state.json" ]; then
    stack_started=1
  fi
  say "DATABASE_URL/KAFKA_BOOTSTRAP_SERVERS unset: starting the local stack (logpipe-dev up)"
  env_lines=$(cargo run -q -p logpipe-devstack --bin logpipe-dev -- up) \
    || die "logpipe-dev up failed"
  eval "$env_lines"
fi
[ -n "${DATABASE_URL:-}" ] || die "DATABASE_URL is not set"
[ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ] || die "KAFKA_BOOTSTRAP_SERVERS is not set"

# 2. The samples, and a database in the state the expected counts assume.
samples=()
for f in events/ingest/*.json; do
  case "$f" in *.expected.json) continue ;; esac
  [ -f "${f%.json}.expected.json" ] || die "$f has no ${f%.json}.expected.json"
  samples+=("$f")
done
[ ${#samples[@]} -gt 0 ] || die "no sample events in events/ingest/ (run python3 events/ingest/generate.py)"

say "emptying logs, ingest_progress and the detect tables"
psql "${DATABASE_OWNER_URL:-$DATABASE_URL}" -q -v ON_ERROR_STOP=1 \
  -c 'TRUNCATE logs, ingest_progress, detect_entity_state, detect_clock, detect_outbox' >/dev/null \
  || die "cannot truncate the tables (is the stack up and migrated?)"

# 3. The function under cargo lambda watch, in its own process group.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
say "starting cargo lambda watch on 127.0.0.1:$port (log: $watch_log)"
# In a non-interactive shell a background job is not a process group
# leader, so setsid does not fork: $! is the new group's id.
# One watch serves every function with one environment, and maintain (which
# migrates and drops partitions) needs the schema owner: the owner's URL
# when the local stack gives one (ingest and detect as the runtime role are
# covered by tests/dbsecurity.rs).
DATABASE_URL="${DATABASE_OWNER_URL:-$DATABASE_URL}" \
KAFKA_BOOTSTRAP_SERVERS="$KAFKA_BOOTSTRAP_SERVERS" \
FORWARD_TOPIC=log-processing \
REPORT_BATCH_ITEM_FAILURES=true \
SCHEMA_REGISTRY=files \
SCHEMA_REGISTRY_DIR="$root/events/ingest/schemas" \
LOG_RETENTION_DAYS=30 \
LOG_PARTITIONS_AHEAD=3 \
  setsid cargo lambda watch --ignore-changes \
    --invoke-address 127.0.0.1 --invoke-port "$port" \
    --timeout "$invoke_timeout" \
    </dev/null >"$watch_log" 2>&1 &
watch_pgid=$!

for i in $(seq 300); do
  if ! kill -0 "$watch_pgid" 2>/dev/null; then
    tail -n 30 "$watch_log" >&2 || true
    die "cargo lambda watch exited"
  fi
  # A plain TCP connect: an HTTP request to / only logs a routing error.
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    break
  fi
  [ "$i" -lt 300 ] || die "cargo lambda watch did not answer on port $port within 60 s"
  sleep 0.2
done

# 4. Invoke and check.
failed=0
for f in "${samples[@]}"; do
  name=$(basename "$f")
  expected="${f%.json}.expected.json"
  out="$work/${name%.json}.response.json"
  err="$work/${name%.json}.invoke.err"
  psql "${DATABASE_OWNER_URL:-$DATABASE_URL}" -q -v ON_ERROR_STOP=1 -c 'TRUNCATE logs, ingest_progress' >/dev/null \
    || die "cannot truncate logs and ingest_progress"
  start=$(date +%s)
  # In the background and waited for, so that Ctrl-C (which reaches only
  # this shell: timeout runs in its own process group) acts at once.
  timeout "$invoke_timeout" cargo lambda invoke ingest \
    --invoke-address 127.0.0.1 --invoke-port "$port" \
    --output-format json --data-file "$f" >"$out" 2>"$err" &
  invoke_pid=$!
  invoke_rc=0
  wait "$invoke_pid" || invoke_rc=$?
  invoke_pid=""
  if [ "$invoke_rc" -ne 0 ]; then
    echo "FAIL $name: cargo lambda invoke failed after $(( $(date +%s) - start )) s:" >&2
    sed 's/^/    /' "$err" "$out" >&2 || true
    echo "    (function log: $watch_log)" >&2
    failed=1
    continue
  fi
  if ! python3 - "$name" "$out" "$expected" "$(( $(date +%s) - start ))" <<'PY'
import json, sys
name, out, expected, secs = sys.argv[1:5]
try:
    with open(out, encoding="utf-8") as f:
        resp = json.load(f)
except ValueError as e:
    with open(out, encoding="utf-8", errors="replace") as f:
        print(f"FAIL {name}: response is not JSON ({e}): {f.read()[:500]}")
    sys.exit(1)
with open(expected, encoding="utf-8") as f:
    exp = json.load(f)
summary = resp.get("summary") if isinstance(resp, dict) else None
if not isinstance(summary, dict):
    print(f"FAIL {name}: response has no summary: {json.dumps(resp)[:500]}")
    sys.exit(1)
problems = []
for key in ("records_in", "records_stored", "records_dead_lettered", "dead_letter_classes"):
    got = summary.get(key)
    if got != exp.get(key):
        problems.append(f"{key}: expected {json.dumps(exp.get(key), sort_keys=True)}, "
                        f"got {json.dumps(got, sort_keys=True)}")
failures = resp.get("batchItemFailures")
if failures != []:
    problems.append(f"batchItemFailures: expected [], got {json.dumps(failures)}")
line = (f"{summary.get('records_in')} in, {summary.get('records_stored')} stored, "
        f"{summary.get('records_dead_lettered')} dead-lettered")
if problems:
    print(f"FAIL {name}: {line}")
    for p in problems:
        print(f"    {p}")
    print(f"    summary: {json.dumps(summary, sort_keys=True)}")
    sys.exit(1)
print(f"ok {name}: {line} ({secs} s)")
PY
  then
    failed=1
  fi
done

# 4b. The detect function, samples in name order (the expected counts assume
# empty detect tables before the first).
for f in events/detect/*.json; do
  case "$f" in *.expected.json) continue ;; esac
  name=$(basename "$f")
  expected="${f%.json}.expected.json"
  out="$work/detect-${name%.json}.response.json"
  invoke_rc=0
  timeout "$invoke_timeout" cargo lambda invoke detect \
    --invoke-address 127.0.0.1 --invoke-port "$port" \
    --output-format json --data-file "$f" >"$out" 2>&1 &
  invoke_pid=$!
  wait "$invoke_pid" || invoke_rc=$?
  invoke_pid=""
  if ! python3 - "$name" "$out" "$expected" "$invoke_rc" <<'PY'
import json, sys
name, out, expected, rc = sys.argv[1:5]
text = open(out, encoding="utf-8", errors="replace").read()
exp = json.load(open(expected, encoding="utf-8"))
try:
    resp = json.loads(text)
except ValueError:
    print(f"FAIL detect {name}: not JSON (exit {rc}): {text[:500]}")
    sys.exit(1)
summary = resp.get("summary") or {}
problems = [f"{k}: expected {json.dumps(v)}, got {json.dumps(summary.get(k))}"
            for k, v in exp.items() if summary.get(k) != v]
if resp.get("batchItemFailures") != []:
    problems.append(f"batchItemFailures: {json.dumps(resp.get('batchItemFailures'))}")
line = (f"{summary.get('records_in')} in, {summary.get('records_processed')} processed, "
        f"{summary.get('records_dead_lettered')} dead-lettered, {summary.get('alerts_new')} alerts, "
        f"{summary.get('predictions_new')} predictions")
if problems:
    print(f"FAIL detect {name}: {line}")
    for p in problems:
        print(f"    {p}")
    sys.exit(1)
print(f"ok detect {name}: {line}")
PY
  then
    failed=1
  fi
done

# 5. The produce function: each schedule sample gives its record count (or
# the named error for the invalid one).
for f in events/produce/*.json; do
  case "$f" in *.expected.json) continue ;; esac
  name=$(basename "$f")
  expected="${f%.json}.expected.json"
  out="$work/produce-${name%.json}.response.json"
  invoke_rc=0
  timeout "$invoke_timeout" cargo lambda invoke produce \
    --invoke-address 127.0.0.1 --invoke-port "$port" \
    --output-format json --data-file "$f" >"$out" 2>&1 &
  invoke_pid=$!
  wait "$invoke_pid" || invoke_rc=$?
  invoke_pid=""
  if ! python3 - "$name" "$out" "$expected" "$invoke_rc" <<'PY'
import json, sys
name, out, expected, rc = sys.argv[1:5]
text = open(out, encoding="utf-8", errors="replace").read()
exp = json.load(open(expected, encoding="utf-8"))
if "produced" in exp:
    try:
        resp = json.loads(text)
    except ValueError:
        print(f"FAIL produce {name}: not JSON (exit {rc}): {text[:500]}")
        sys.exit(1)
    total = sum(p["records"] for p in resp.get("partitions", {}).values())
    if resp.get("produced") != exp["produced"] or total != exp["produced"]:
        print(f"FAIL produce {name}: expected {exp['produced']} produced, got {json.dumps(resp)[:500]}")
        sys.exit(1)
    print(f"ok produce {name}: {resp['produced']} records over {len(resp['partitions'])} partitions")
else:
    if rc == "0" or exp["error_type"] not in text or exp["message_contains"] not in text:
        print(f"FAIL produce {name}: expected error {exp['error_type']}, got (exit {rc}): {text[:500]}")
        sys.exit(1)
    print(f"ok produce {name}: rejected ({exp['error_type']})")
PY
  then
    failed=1
  fi
done

# 6. The maintain function on the local stack's logs partitions: each
# schedule sample runs with the settings it expects; a repeat of the same
# invocation changes nothing (the run is idempotent); the invalid one is
# refused by name.
for f in events/maintain/*.json; do
  case "$f" in *.expected.json) continue ;; esac
  name=$(basename "$f")
  expected="${f%.json}.expected.json"
  runs=1
  grep -q '"repeat_is_no_op": *true' "$expected" && runs=2
  outs=()
  codes=()
  for run in $(seq "$runs"); do
    out="$work/maintain-${name%.json}.$run.response.json"
    invoke_rc=0
    timeout "$invoke_timeout" cargo lambda invoke maintain \
      --invoke-address 127.0.0.1 --invoke-port "$port" \
      --output-format json --data-file "$f" >"$out" 2>&1 &
    invoke_pid=$!
    wait "$invoke_pid" || invoke_rc=$?
    invoke_pid=""
    outs+=("$out")
    codes+=("$invoke_rc")
  done
  if ! python3 - "$name" "$expected" "${codes[0]}" "${outs[@]}" <<'PY'
import json, sys
name, expected, rc, outs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
exp = json.load(open(expected, encoding="utf-8"))
texts = [open(o, encoding="utf-8", errors="replace").read() for o in outs]
if "error_type" in exp:
    if rc == "0" or exp["error_type"] not in texts[0] or exp["message_contains"] not in texts[0]:
        print(f"FAIL maintain {name}: expected error {exp['error_type']}, got (exit {rc}): {texts[0][:500]}")
        sys.exit(1)
    print(f"ok maintain {name}: rejected ({exp['error_type']})")
    sys.exit(0)
try:
    runs = [json.loads(t) for t in texts]
except ValueError:
    print(f"FAIL maintain {name}: not JSON (exit {rc}): {texts[0][:500]}")
    sys.exit(1)
first = runs[0]
problems = [f"{k}: expected {exp[k]}, got {first.get(k)}"
            for k in ("retention_days", "partitions_ahead") if first.get(k) != exp[k]]
changes = ("partitions_created", "partitions_dropped", "rows_moved_from_default",
           "rows_expired_from_default", "migrations_applied")
if any(k not in first for k in changes):
    problems.append(f"summary fields missing: {json.dumps(first)[:500]}")
if len(runs) > 1 and any(runs[1].get(k) for k in changes):
    problems.append(f"the repeat changed something: {json.dumps(runs[1])[:500]}")
if problems:
    print(f"FAIL maintain {name}:")
    for p in problems:
        print(f"    {p}")
    sys.exit(1)
print(f"ok maintain {name}: {len(first['partitions_created'])} partitions created, "
      f"{len(first['partitions_dropped'])} dropped, {first['rows_moved_from_default']} rows moved"
      + ("; the repeat changed nothing" if len(runs) > 1 else ""))
PY
  then
    failed=1
  fi
done

if [ "$failed" -ne 0 ]; then
  echo "some samples did not give the expected counts (function log: $watch_log)" >&2
  exit 1
fi
say "every sample gave the expected counts"
