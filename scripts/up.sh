#!/usr/bin/env bash
# Builds everything and starts the default deployment, then prints the
# dashboard URL. Stop it with scripts/down.sh.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
scripts/setup.sh
scripts/build.sh

RUN_DIR="$ROOT/.run"
mkdir -p "$RUN_DIR"
PORT="${PORT:-8080}"
if [ -f "$RUN_DIR/node.pid" ] && kill -0 "$(cat "$RUN_DIR/node.pid")" 2>/dev/null; then
  log "already running (pid $(cat "$RUN_DIR/node.pid"))"
else
  log "starting kv-node on 127.0.0.1:$PORT"
  setsid nohup target/release/kv-node --port "$PORT" >"$RUN_DIR/node.log" 2>&1 &
  echo $! >"$RUN_DIR/node.pid"
fi
for _ in $(seq 1 50); do
  if curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; then
    echo "Dashboard: http://127.0.0.1:$PORT/"
    exit 0
  fi
  sleep 0.2
done
tail -n 20 "$RUN_DIR/node.log" >&2
die "kv-node did not answer /health on port $PORT"
