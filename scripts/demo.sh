#!/usr/bin/env bash
# `make demo` (for now): start the local stack, run the ingest function under
# `cargo lambda watch` on the sample events (every format, plus malformed
# records), and show what landed in PostgreSQL and on the dead-letter topic.
# The full live demo (producer on a schedule, detection, health) comes with
# the local event source mapping issue.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$HOME/.cargo/bin:$PATH"
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

say "starting the local stack (PostgreSQL, Tansu, moto)"
eval "$(cargo run -q -p logpipe-devstack --bin logpipe-dev -- up)"
trap 'say "stopping the local stack"; cargo run -q -p logpipe-devstack --bin logpipe-dev -- down' EXIT

say "invoking the ingest function with every sample in events/ingest/"
KEEP_STACK=1 scripts/invoke-samples.sh

q() { psql "$DATABASE_URL" -X -P pager=off "$@"; }
say "rows per source type"
q -c "SELECT source_type, count(*) AS rows FROM logs GROUP BY 1 ORDER BY 2 DESC"
say "status codes (view status_code_distribution)"
q -c "SELECT * FROM status_code_distribution"
say "top endpoints (view top_endpoints)"
q -c "SELECT http_method, http_path, requests, server_errors, avg_latency_ms FROM top_endpoints LIMIT 5"
say "error rate per minute and service (view error_rate_per_minute)"
q -c "SELECT * FROM error_rate_per_minute LIMIT 8"
say "full-text search: messages matching 'failed'"
q -c "SELECT source_type, service, left(message, 60) AS message FROM logs WHERE to_tsvector('simple', message) @@ plainto_tsquery('simple', 'failed')"
say "progress per partition (ingest_progress)"
q -c "SELECT topic, kafka_partition, last_offset FROM ingest_progress ORDER BY 1, 2"
