# logpipe — every target installs what it needs first (scripts/bootstrap.sh).
SHELL := /bin/bash
export PATH := $(CURDIR)/.venv/bin:$(HOME)/.cargo/bin:$(PATH)
CARGO ?= cargo
FUNCTIONS := ingest produce

.PHONY: help demo test unit integration lint invoke build build-arm64 bench up down env topics tools clean

help:
	@echo "make demo     run the pipeline on the local stack and show what happened"
	@echo "make test     everything CI runs: lint, unit + integration tests, sample invokes, Lambda build"
	@echo "make up|down  start/stop the local stack (PostgreSQL, Tansu, moto); make env prints its variables"
	@echo "make invoke   cargo lambda watch + invoke every sample in events/ingest, checking the summaries"
	@echo "make build    cargo lambda build --release for every function"
	@echo "make bench    benchmarks (RESULT lines)"
	@echo "make topics   apply infra/topics.json (creates what is missing, reports drift)"
	@echo "make backtest score a history offline with the detectors (INPUT=file.csv|.jsonl ARGS=...)"

tools:
	@scripts/bootstrap.sh all

demo: tools
	@scripts/demo.sh

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

build-arm64: tools
	@for f in $(FUNCTIONS); do $(CARGO) lambda build --release --arm64 -p $$f || exit 1; done

bench: tools
	$(CARGO) run --release -q -p logpipe-bench

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
