#!/usr/bin/env bash
# Installs what logpipe's make targets need, skipping whatever is present:
#   - apt packages (cmake for librdkafka, PostgreSQL server binaries; for
#     `all` also chromium, the headless browser of tests/dashboard.rs) when root
#   - the Tansu broker (cargo install, ~10 min the first time) and cargo-deny
#   - a project-local Python venv (.venv) with moto and cargo-lambda, and the
#     template validators (aws-sam-cli, cfn-lint)
#   - for arm64 only: the aarch64-unknown-linux-gnu Rust target (rustup)
# Usage: scripts/bootstrap.sh [stack|lambda|all|arm64]   (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"
say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

need_apt=()
command -v cmake >/dev/null || need_apt+=(cmake)
command -v c++ >/dev/null || need_apt+=(g++)
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then
  need_apt+=(postgresql)
fi
# The local dashboard's test drives a real headless browser (tests only).
if [ "$what" = all ] && ! command -v chromium >/dev/null; then
  say "chromium is missing: tests/dashboard.rs runs the local dashboard in headless Chromium"
  need_apt+=(chromium)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    say "installing apt packages: ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    say "missing system packages: ${need_apt[*]} — install them (e.g. sudo apt-get install ${need_apt[*]})"
    exit 1
  fi
fi

export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v tansu >/dev/null; then
  say "installing the Tansu broker (cargo install tansu 0.6.0; ~10 minutes on 2 cores, once)"
  cargo install --locked tansu --version 0.6.0 --features dynostore
fi
# cargo-deny: licences, RustSec advisories and sources of the dependency tree
# (deny.toml; a `make test` step). Reuses ~/.cargo/bin once installed.
if [ "$what" = all ] && ! command -v cargo-deny >/dev/null; then
  say "installing cargo-deny (cargo install --locked; a few minutes, once)"
  cargo install --locked cargo-deny
fi

venv=.venv
if [ ! -x "$venv/bin/python" ]; then
  say "creating the project venv ($venv)"
  python3 -m venv "$venv"
fi
pkgs=()
[ -x "$venv/bin/moto_server" ] || pkgs+=("moto[server]==5.*")
if [ "$what" != stack ]; then
  [ -x "$venv/bin/cargo-lambda" ] || pkgs+=("cargo-lambda")
  [ -x "$venv/bin/sam" ] || pkgs+=("aws-sam-cli==1.*")
  [ -x "$venv/bin/cfn-lint" ] || pkgs+=("cfn-lint==1.*")
fi
if [ ${#pkgs[@]} -gt 0 ]; then
  say "installing into $venv: ${pkgs[*]}"
  "$venv/bin/pip" install -q --disable-pip-version-check "${pkgs[@]}"
fi
if [ "$what" = arm64 ] && ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
  say "adding the Rust target aarch64-unknown-linux-gnu (rustup) for arm64 Lambda builds"
  rustup target add aarch64-unknown-linux-gnu
fi
say "tools ready"
