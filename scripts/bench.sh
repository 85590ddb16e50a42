#!/usr/bin/env bash
# The benchmark side by side with etcd and Redis (kv-loadtester bench): installs Debian's
# etcd-server and redis-server when missing (only here: nothing else needs them; their own
# services are kept from starting), builds the release binaries, then starts every system on
# 127.0.0.1, measures it and stops it. Results in bench-results/ (bench.md, bench.json, logs).
#
# Usage: scripts/bench.sh [kv-loadtester bench options]   (e.g. --systems single,lf-w3 --seconds 5)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

case "${1:-}" in
  -h | --help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exec target/release/kv-loadtester bench --help ;;
esac

need_apt=()
command -v etcd >/dev/null || need_apt+=(etcd-server)
command -v redis-server >/dev/null || need_apt+=(redis-server)
((${#need_apt[@]})) && apt_install_without_services etcd.service,redis-server.service "${need_apt[@]}"

log "building kv-node and kv-loadtester (release)"
cargo build --release -q -p kv-node -p kv-loadtester
exec target/release/kv-loadtester bench "$@"
