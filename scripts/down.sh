#!/usr/bin/env bash
# Stops what scripts/up.sh started.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
PID_FILE="$ROOT/.run/node.pid"
if [ -f "$PID_FILE" ]; then
  pid="$(cat "$PID_FILE")"
  if grep -q kv-node "/proc/$pid/cmdline" 2>/dev/null; then
    kill "$pid"
    log "stopped kv-node (pid $pid)"
  fi
  rm -f "$PID_FILE"
fi
