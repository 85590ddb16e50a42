#!/usr/bin/env bash
# Runs every test: formatting, lints (host and wasm32), docs, then the unit,
# HTTP, cluster, Terraform (local, SSH), container and browser tests.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
scripts/setup.sh --tests

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy (host)"
cargo clippy --workspace --all-targets -- -D warnings
log "cargo clippy (wasm32: shared, web-ui)"
cargo clippy -p kv-shared -p kv-web-ui --target wasm32-unknown-unknown -- -D warnings
log "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
log "building the dashboard and the static kv-node (the browser, SSH and container tests use them)"
scripts/build.sh --static
log "building the workspace (tests start kv-node processes)"
cargo build --workspace --bins
log "doc tests"
cargo test --workspace --doc --quiet
log "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
