#!/usr/bin/env bash
# CI smoke test of the deploy path: `cargo lambda deploy` of every function
# (with its [package.metadata.lambda.deploy]: memory, timeout, env file) into
# moto's Lambda on a free loopback port, then the functions are listed and
# checked. moto is started and stopped here, also when something fails.
# Needs the release builds in target/lambda/<fn>/bootstrap (make build).
# Usage: scripts/deploy-smoke.sh [function...]   (default: ingest produce detect maintain)
#   LAMBDA_DIR=target/lambda-arm64 scripts/deploy-smoke.sh   deploys the
#   arm64 builds (make build-arm64) and expects arm64 functions.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$HOME/.cargo/bin:$PATH"
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

lambda_dir=${LAMBDA_DIR:-target/lambda}
expect_arch=x86_64
[ "$lambda_dir" = target/lambda-arm64 ] && expect_arch=arm64
functions=("$@")
[ ${#functions[@]} -gt 0 ] || functions=(ingest produce detect maintain)
for f in "${functions[@]}"; do
  if [ ! -f "$lambda_dir/$f/bootstrap" ]; then
    say "$lambda_dir/$f/bootstrap is missing: run make build (or make build-arm64) first"
    exit 1
  fi
done
command -v moto_server >/dev/null || { say "moto_server is missing: run scripts/bootstrap.sh"; exit 1; }

work=$(mktemp -d)
moto_pid=""
cleanup() {
  if [ -n "$moto_pid" ] && kill -0 "$moto_pid" 2>/dev/null; then
    kill "$moto_pid" 2>/dev/null || true
    wait "$moto_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
endpoint="http://127.0.0.1:$port"
say "starting moto on $endpoint"
moto_server -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto_pid=$!

# Dummy credentials: moto accepts anything; nothing may reach real AWS.
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
unset AWS_PROFILE AWS_ENDPOINT_URL

python - "$endpoint" <<'EOF'
import sys, time, urllib.request
url = sys.argv[1] + "/moto-api/"
deadline = time.time() + 30
while True:
    try:
        urllib.request.urlopen(url, timeout=1)
        break
    except Exception as e:
        if time.time() > deadline:
            sys.exit(f"moto did not answer on {url} within 30 s: {e}")
        time.sleep(0.2)
EOF

say "creating the execution role in moto's IAM"
role_arn=$(python - "$endpoint" <<'EOF'
import json, sys, boto3
iam = boto3.client("iam", endpoint_url=sys.argv[1])
trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
         "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
role = iam.create_role(RoleName="logpipe-smoke", AssumeRolePolicyDocument=json.dumps(trust))
print(role["Role"]["Arn"])
EOF
)

# From the package directory: env_file in [package.metadata.lambda.deploy]
# is resolved against the working directory.
for f in "${functions[@]}"; do
  say "cargo lambda deploy $f"
  (cd "functions/$f" && cargo lambda deploy --lambda-dir "$OLDPWD/$lambda_dir" \
    --endpoint-url "$endpoint" --region us-east-1 --iam-role "$role_arn" "$f")
done

say "listing the functions in moto"
python - "$endpoint" "$expect_arch" "${functions[@]}" <<'EOF'
import sys, boto3
endpoint, arch, expected = sys.argv[1], sys.argv[2], sys.argv[3:]
lam = boto3.client("lambda", endpoint_url=endpoint)
found = {}
for page in lam.get_paginator("list_functions").paginate():
    for fn in page["Functions"]:
        found[fn["FunctionName"]] = fn
missing = [f for f in expected if f not in found]
if missing:
    sys.exit(f"missing after deploy: {missing}; found {sorted(found)}")
problems = []
for name in expected:
    fn = found[name]
    env = (fn.get("Environment") or {}).get("Variables") or {}
    print(f"{name}: runtime={fn.get('Runtime')} memory={fn.get('MemorySize')} "
          f"timeout={fn.get('Timeout')} arch={fn.get('Architectures')} "
          f"env={sorted(env)}")
    if not str(fn.get("Runtime", "")).startswith("provided.al2"):
        problems.append(f"{name}: runtime {fn.get('Runtime')!r}, expected provided.al2023")
    if fn.get("Architectures") != [arch]:
        problems.append(f"{name}: architectures {fn.get('Architectures')}, expected [{arch!r}]")
    # Every variable of its env file (maintain has no Kafka settings).
    env_file = f"infra/env/{name}.env"
    wanted = {line.split("=", 1)[0].strip() for line in open(env_file)
              if "=" in line and not line.lstrip().startswith("#")}
    missing_vars = sorted(wanted - set(env))
    if not wanted or missing_vars:
        problems.append(f"{name}: {env_file} was not applied (missing {missing_vars or 'everything'})")
if problems:
    sys.exit("\n".join(problems))
print(f"deployed and listed: {', '.join(expected)}")
EOF
say "deploy smoke test passed"
