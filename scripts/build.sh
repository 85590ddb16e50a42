#!/usr/bin/env bash
# Builds the dashboard (trunk, release) and then the release binaries, which
# embed the dashboard.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
log "building the dashboard (trunk build --release)"
trunk build --release --offline
log "building kv-node and kv-loadtester (release)"
cargo build --release -p kv-node -p kv-loadtester
