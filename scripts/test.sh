#!/usr/bin/env bash
# `make test`: lints, every unit and integration test, the sample events
# through `cargo lambda watch`, the SAM template validation, the Lambda
# release build and a deploy of it into moto. Ends with one line that counts
# every test: "tests: N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$HOME/.cargo/bin:$PATH"
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
log=target/test-output.log
mkdir -p target
passed=0
failed=0
status=0

step() { # name, command...
  local name=$1
  shift
  say "$name"
  if "$@"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    status=1
    say "FAILED: $name"
  fi
}

step "formatting (cargo fmt --check)" cargo fmt --all -- --check
step "lints (cargo clippy -D warnings)" cargo clippy --workspace --all-targets -- -D warnings
# Advisories need the RustSec database from github.com: fetched when reachable,
# else a cached copy (~/.cargo/advisory-dbs) is used (--offline: no second fetch); with neither, the
# advisories check is skipped and says so (licences, bans, sources still run).
if cargo deny --locked fetch db >/dev/null 2>&1 || ls -d "$HOME"/.cargo/advisory-dbs/*/ >/dev/null 2>&1; then
  step "supply chain: advisories, licences, bans, sources (cargo deny check, deny.toml)" cargo deny --locked --offline check
else
  say "SKIPPED cargo deny advisories: no RustSec database (github.com unreachable, nothing cached)"
  step "supply chain: licences, bans, sources (cargo deny check, deny.toml)" cargo deny --locked check licenses bans sources
fi

say "unit and integration tests (each integration test starts and stops its own PostgreSQL, Tansu and moto)"
# --no-fail-fast: every test binary runs even when an earlier one fails.
cargo test --workspace --lib --bins --tests --no-fail-fast 2>&1 | tee "$log"
if [ "${PIPESTATUS[0]}" != 0 ]; then status=1; fi
read -r p f < <(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } } END { print p + 0, f + 0 }' "$log")
passed=$((passed + p))
failed=$((failed + f))
# Which binaries and tests failed, in one place at the end of the log.
failed_binaries=$(awk '/^     Running / { bin = $2 } /^test result: FAILED/ { print "  " bin }' "$log")
failed_tests=$(grep -E '^test .* \.\.\. FAILED$' "$log" | sed -E 's/^test (.*) \.\.\. FAILED$/  \1/' || true)

# Brief fuzzing of every parser target (20 s each). The kafka_event and
# classify targets link the whole function (rdkafka, the AWS SDK): their
# first instrumented build takes ~40 min on 2 cores, so they run in
# `make fuzz` only.
step "fuzzing, briefly: the parser targets (FUZZ_SCOPE=parsers scripts/fuzz.sh 20)" env FUZZ_SCOPE=parsers scripts/fuzz.sh 20
step "sample events through cargo lambda watch (scripts/invoke-samples.sh)" scripts/invoke-samples.sh
step "SAM template: sam validate, --lint, cfn-lint, expected failures (scripts/validate.sh)" scripts/validate.sh
step "Lambda release build (cargo lambda build --release)" make --no-print-directory build
step "deploy smoke test: cargo lambda deploy into moto's Lambda (scripts/deploy-smoke.sh)" scripts/deploy-smoke.sh

echo
if [ -n "${failed_binaries:-}" ]; then
  echo "failed test binaries:"
  echo "$failed_binaries"
  echo "failed tests:"
  echo "$failed_tests"
fi
echo "tests: $passed passed, $failed failed"
exit $status
