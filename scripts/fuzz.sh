#!/usr/bin/env bash
# Builds and runs every cargo-fuzz target in fuzz/ for SECONDS each, then
# prints runs / seconds / crashes per target. Exits non-zero on any crash;
# the crashing input stays in fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh [SECONDS]        (default $FUZZ_SECONDS, else 600: make fuzz)
#   FUZZ_SECONDS=30 scripts/fuzz.sh  brief run, as CI does
#   FUZZ_TARGETS="parse syslog"      only these targets
#   FUZZ_SANITIZER=none              no AddressSanitizer (default address)
#   FUZZ_SCOPE=parsers               only the schema targets: kafka_event and
#                                    classify link the function (rdkafka, the
#                                    AWS SDK), whose first build takes long
#
# The toolchain is stable; cargo-fuzz passes nightly-only flags (-Z...), which
# RUSTC_BOOTSTRAP=1 lets stable rustc accept (AddressSanitizer included).
# Debug assertions are on, so integer overflow is a crash too. Changing the
# sanitizer rebuilds everything in fuzz/target.
#
# Working corpora grow in fuzz/target/corpus/<target> (kept between runs);
# the committed seeds in fuzz/corpus/<target> are only read.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export RUSTC_BOOTSTRAP=1

secs=${1:-${FUZZ_SECONDS:-600}}
sanitizer=${FUZZ_SANITIZER:-address}
if ! [[ $secs =~ ^[1-9][0-9]*$ ]]; then
  echo "fuzz: SECONDS must be a positive integer, got '$secs'" >&2
  exit 2
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz (cargo install cargo-fuzz --locked)"
  cargo install cargo-fuzz --locked
fi

all_targets=$(cargo fuzz list --fuzz-dir fuzz)
features=()
case ${FUZZ_SCOPE:-all} in
  all) ;;
  parsers)
    features=(--no-default-features)
    all_targets=$(grep -vxE 'kafka_event|classify' <<<"$all_targets")
    ;;
  *) echo "fuzz: FUZZ_SCOPE must be all or parsers" >&2; exit 2 ;;
esac
targets=${FUZZ_TARGETS:-$all_targets}

start=$(date +%s)
echo "==> cargo fuzz build (sanitizer: $sanitizer) into fuzz/target"
# One build for every target, so the shared dependencies compile once.
cargo fuzz build --fuzz-dir fuzz -s "$sanitizer" "${features[@]}"
echo "    built in $(($(date +%s) - start)) s"

logs=fuzz/target/fuzz-logs
mkdir -p "$logs"
summary=()
failed=0
for t in $targets; do
  if ! grep -qx "$t" <<<"$all_targets"; then
    echo "fuzz: unknown target '$t' (known: $(echo $all_targets))" >&2
    exit 2
  fi
  mkdir -p "fuzz/target/corpus/$t"
  echo "==> $t for ${secs} s (log: $logs/$t.log)"
  t0=$(date +%s)
  rc=0
  # -timeout: one input taking 10 s is a bug (quadratic parsing), not patience.
  cargo fuzz run --fuzz-dir fuzz -s "$sanitizer" "${features[@]}" "$t" \
    "fuzz/target/corpus/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$logs/$t.log" 2>&1 || rc=$?
  took=$(($(date +%s) - t0))
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log" | tail -1)
  crashes=$(grep -c 'Test unit written to' "$logs/$t.log" || true)
  if [[ $rc -ne 0 && $crashes -eq 0 ]]; then
    crashes="?"  # the fuzzer failed without writing an input: see the log
  fi
  summary+=("$(printf '%-12s %12s %8s %8s' "$t" "${runs:-?}" "$took" "$crashes")")
  if [[ $rc -ne 0 ]]; then
    failed=1
    echo "    FAILED (exit $rc):"
    grep -E 'panicked at|ERROR: libFuzzer|SUMMARY|Test unit written to' "$logs/$t.log" | head -8 | sed 's/^/      /'
    for f in $(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$logs/$t.log"); do
      echo "    crash input: $f"
      echo "    reproduce:   RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz -s $sanitizer ${features[*]} $t $f"
    done
  fi
done

echo
printf '%-12s %12s %8s %8s\n' target runs seconds crashes
printf '%s\n' "${summary[@]}"
echo "total $(($(date +%s) - start)) s (build included)"
if [[ $failed -ne 0 ]]; then
  echo "fuzz: FAILED (crash inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz: no crashes"
