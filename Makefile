# logpipe — every target installs what it needs first (scripts/bootstrap.sh).
SHELL := /bin/bash
export PATH := $(CURDIR)/.venv/bin:$(HOME)/.cargo/bin:$(PATH)
CARGO ?= cargo
FUNCTIONS := ingest produce detect maintain
# arm64 release builds go to their own directory so they never replace the
# x86_64 ones in target/lambda that `make build` and the smoke deploy use.
ARM64_DIR := target/lambda-arm64

.PHONY: help demo dashboard test unit integration lint invoke build build-arm64 bench up down env topics tools clean validate deploy sam-deploy deploy-smoke

help:
	@echo "make demo     run the pipeline on the local stack and show what happened"
	@echo "make dashboard  the Grafana dashboard's panels on http://127.0.0.1:8090 from the local stack (DASHBOARD_PORT; make demo DASHBOARD=1 too)"
	@echo "make test     everything CI runs: lint, unit + integration tests, sample invokes, Lambda build"
	@echo "make up|down  start/stop the local stack (PostgreSQL, Tansu, moto); make env prints its variables"
	@echo "make invoke   cargo lambda watch + invoke every sample in events/ingest, checking the summaries"
	@echo "make build    cargo lambda build --release for every function"
	@echo "make build-arm64  the same for arm64 Lambda (into $(ARM64_DIR)); not part of make test"
	@echo "make validate sam validate, sam validate --lint and cfn-lint on infra/template.yaml, plus expected failures"
	@echo "make deploy   arm64 build + cargo lambda deploy of every function (DEPLOY_ARGS=\"--region ... --iam-role ...\")"
	@echo "make sam-deploy  sam build + sam deploy of infra/template.yaml (guided the first time)"
	@echo "make deploy-smoke  cargo lambda deploy of every function into moto's Lambda (CI smoke test)"
	@echo "make bench    benchmarks (RESULT lines)"
	@echo "make eval     detector benchmark: labelled synthetic series, NAB scoring, vs an EWMA z-score (RESULT lines)"
	@echo "make topics   apply infra/topics.json (creates what is missing, reports drift)"
	@echo "make esm      local Kafka event source mappings into cargo lambda watch (Ctrl-C stops)"
	@echo "make backtest score a history offline with the detectors (INPUT=file.csv|.jsonl ARGS=...)"
	@echo "make fuzz     every cargo-fuzz target for FUZZ_SECONDS each (default 600)"

tools:
	@scripts/bootstrap.sh all

demo: tools
	@scripts/demo.sh

# The local dashboard (tools/dashboard): the panels of
# infra/grafana/logpipe.json from the local stack's PostgreSQL (started if
# it is not running), on 127.0.0.1:$${DASHBOARD_PORT:-8090}, until Ctrl-C.
dashboard: tools
	@eval "$$($(CARGO) run -q -p logpipe-devstack --bin logpipe-dev -- up)" && \
	  $(CARGO) run -q -p logpipe-dashboard

test: tools
	@scripts/test.sh

unit:
	$(CARGO) test --workspace --lib --bins

integration: tools
	$(CARGO) test -p logpipe-tests

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

invoke: tools
	@scripts/invoke-samples.sh

build: tools
	@for f in $(FUNCTIONS); do echo "==> cargo lambda build --release -p $$f"; $(CARGO) lambda build --release -p $$f || exit 1; done
	@ls -l target/lambda/*/bootstrap

build-arm64:
	@scripts/bootstrap.sh arm64
	@for f in $(FUNCTIONS); do echo "==> cargo lambda build --release --arm64 -p $$f"; $(CARGO) lambda build --release --arm64 --lambda-dir $(ARM64_DIR) -p $$f || exit 1; done
	@ls -l $(ARM64_DIR)/*/bootstrap

validate: tools
	@scripts/validate.sh

# Deploys the arm64 builds with `cargo lambda deploy`, each with its
# [package.metadata.lambda.deploy] (memory, timeout, infra/env/<fn>.env),
# run from the package directory (cargo lambda resolves env_file from there).
# The event source mappings and schedule come from the SAM template
# (make sam-deploy), or create them yourself (README "Deploying to AWS").
#   make deploy DEPLOY_ARGS="--region eu-west-1 --iam-role arn:aws:iam::123456789012:role/logpipe"
deploy: build-arm64
	@for f in $(FUNCTIONS); do echo "==> cargo lambda deploy $$f"; \
	  (cd functions/$$f && $(CARGO) lambda deploy --lambda-dir $(CURDIR)/$(ARM64_DIR) $(DEPLOY_ARGS) $$f) || exit 1; done

# sam build (cargo lambda, arm64) + sam deploy. The first run is guided and
# writes infra/samconfig.toml (your stack name, region and parameters; keep
# it out of git); later runs reuse it. SAM_ARGS are passed to sam deploy.
sam-deploy:
	@scripts/bootstrap.sh arm64
	cd infra && SAM_CLI_BETA_RUST_CARGO_LAMBDA=1 sam build --beta-features
	@if [ -f infra/samconfig.toml ]; then cd infra && sam deploy $(SAM_ARGS); \
	else cd infra && sam deploy --guided --capabilities CAPABILITY_IAM $(SAM_ARGS); fi

# CI smoke test: every function deployed with cargo lambda into moto's Lambda.
deploy-smoke: build
	@scripts/deploy-smoke.sh

bench: tools
	$(CARGO) run --release -q -p logpipe-bench

# NAB-style scores of the calibrated series scorer and a plain EWMA z-score
# on generated labelled series (tools/eval); no services, a few seconds.
.PHONY: eval
eval:
	$(CARGO) run --release -q -p logpipe-eval

up: tools
	@$(CARGO) run -q -p logpipe-devstack --bin logpipe-dev -- up

down:
	@$(CARGO) run -q -p logpipe-devstack --bin logpipe-dev -- down

env:
	@$(CARGO) run -q -p logpipe-devstack --bin logpipe-dev -- env

# Applies infra/topics.json: to the local stack, or to the cluster named by
# KAFKA_BOOTSTRAP_SERVERS (+ KAFKA_* security variables), e.g.
#   make topics KAFKA_BOOTSTRAP_SERVERS=b-1...:9096 TOPICS_ARGS="--replication-factor 3"
topics:
	@$(CARGO) run -q -p logpipe-devstack --bin logpipe-dev -- topics $(TOPICS_ARGS)

# Local Kafka event source mappings (infra/template.yaml, else
# infra/local-mappings.json) feeding functions served by
#   cargo lambda watch --invoke-address 127.0.0.1 --invoke-port 9000
# until Ctrl-C, e.g. make esm ESM_ARGS="--endpoint http://127.0.0.1:9001"
esm:
	@$(CARGO) run -q -p logpipe-devstack --bin logpipe-dev -- esm $(ESM_ARGS)

# Consumer-group lag and status (Burrow's rules), ingest freshness, DLQ
# counts; exit 0 when every group is OK (3 WARN, 4 STOP/STALL/REWIND), e.g.
#   make health HEALTH_ARGS="--json --samples 10 --interval 2s"
.PHONY: health
health:
	@$(CARGO) run -q -p logpipe-devstack --bin logpipe-dev -- health $(HEALTH_ARGS)

# Runs the detectors offline over a CSV (timestamp,value) or JSON-lines
# history and writes every row with a score and a flag (see --help), e.g.
#   make backtest INPUT=history.csv ARGS="--detector volume -o scored.csv"
.PHONY: backtest
backtest: INPUT ?= events/detect/backtest/latency.csv
backtest:
	@$(CARGO) run -q -p logpipe-backtest -- $(ARGS) $(INPUT)

clean: down
	rm -rf .local target/lambda

# cargo-fuzz targets (fuzz/) for the Kafka event decode, every parser and the
# ingest classifier, FUZZ_SECONDS each (default 600), e.g.
#   make fuzz FUZZ_SECONDS=30 FUZZ_TARGETS="parse syslog"
.PHONY: fuzz
fuzz:
	@scripts/fuzz.sh
