#!/usr/bin/env bash
# `make validate`: the SAM template must pass every validator, and copies of
# it with known mistakes must fail the validator that is meant to catch them
# (so a validator that silently stopped checking is noticed too).
#   - sam validate            (SAM transform: catches bad SAM event properties)
#   - sam validate --lint     (cfn-lint on the transformed template)
#   - cfn-lint + infra/lint-rules (our contracts: ReportBatchItemFailures on a
#     mapping <=> REPORT_BATCH_ITEM_FAILURES=true on its function; MSK IAM
#     kafka-cluster actions named and scoped, never wildcards)
# Offline: no AWS credentials or network needed. TEMPLATE=path checks another file.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export SAM_CLI_TELEMETRY=0
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

template=${TEMPLATE:-infra/template.yaml}
region=us-east-1
for tool in sam cfn-lint python; do
  command -v "$tool" >/dev/null || { say "$tool is missing: run scripts/bootstrap.sh"; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

failures=0
check() { # description, command...
  local what=$1
  shift
  if "$@" >"$work/out" 2>&1; then
    say "ok: $what"
  else
    cat "$work/out" >&2
    say "FAILED: $what"
    failures=$((failures + 1))
  fi
}

# expect_failure description needle command... : the command must fail and say needle.
expect_failure() {
  local what=$1 needle=$2
  shift 2
  if "$@" >"$work/out" 2>&1; then
    cat "$work/out" >&2
    say "FAILED: $what: the validator accepted it"
    failures=$((failures + 1))
  elif ! grep -qF -- "$needle" "$work/out"; then
    cat "$work/out" >&2
    say "FAILED: $what: rejected, but without \"$needle\""
    failures=$((failures + 1))
  else
    say "ok (rejected as expected): $what"
  fi
}

# mutate NAME OLD NEW: a copy of the template with the first OLD replaced by NEW.
mutate() {
  python - "$template" "$work/$1.yaml" "$2" "$3" <<'EOF'
import sys
src, dst, old, new = sys.argv[1:]
text = open(src).read()
if old not in text:
    sys.exit(f"mutation target not found in {src}: {old!r}")
open(dst, "w").write(text.replace(old, new, 1))
EOF
}

say "validating $template"
check "sam validate" sam validate --region "$region" -t "$template"
check "sam validate --lint" sam validate --lint --region "$region" -t "$template"
check "cfn-lint with infra/lint-rules" cfn-lint "$template" --append-rules infra/lint-rules

say "copies with known mistakes must be rejected"
mutate no-bootstrap-servers '      Events:
        Traffic:
' '      Events:
        Broken:
          Type: SelfManagedKafka
          Properties:
            Topics: [log-ingestion]
            SourceAccessConfigurations:
              - Type: BASIC_AUTH
                URI: !Ref KafkaSecretArn
        Traffic:
'
expect_failure "SAM SelfManagedKafka event without KafkaBootstrapServers (sam validate)" \
  "No KafkaBootstrapServers provided" sam validate --region "$region" -t "$work/no-bootstrap-servers.yaml"

mutate bad-access-type 'Type: VPC_SECURITY_GROUP
' 'Type: VPC_SECURITY_GROUPS
'
expect_failure "mapping SourceAccessConfigurations type VPC_SECURITY_GROUPS (cfn-lint)" \
  "E3030" cfn-lint "$work/bad-access-type.yaml"

mutate ignored-failure-list '      FunctionResponseTypes: [ReportBatchItemFailures]
' ''
expect_failure "REPORT_BATCH_ITEM_FAILURES=true on a mapping without ReportBatchItemFailures (infra/lint-rules)" \
  "E9101" cfn-lint "$work/ignored-failure-list.yaml" --append-rules infra/lint-rules

mutate kafka-cluster-wildcard '- kafka-cluster:WriteDataIdempotently
' '- kafka-cluster:*
'
expect_failure "a kafka-cluster:* grant (infra/lint-rules)" \
  "E9102" cfn-lint "$work/kafka-cluster-wildcard.yaml" --append-rules infra/lint-rules

mutate kafka-cluster-any-resource '                  Resource: !Ref MskClusterArn
' '                  Resource: "*"
'
expect_failure "kafka-cluster actions on Resource \"*\" (infra/lint-rules)" \
  "E9102" cfn-lint "$work/kafka-cluster-any-resource.yaml" --append-rules infra/lint-rules

if [ "$failures" -gt 0 ]; then
  say "template validation: $failures check(s) failed"
  exit 1
fi
say "template validation passed"
