#!/usr/bin/env bash
# Stops the nodes of a deployment: exactly the processes recorded in KV_RUN_DIR/node-ID.pid
# for the ids in KV_NODE_IDS (space-separated), by SIGTERM, then SIGKILL after 10 s.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR
source "$here/lib.sh"

: "${KV_RUN_DIR:?}"
read -r -a ids <<<"${KV_NODE_IDS:-}"
((${#ids[@]})) || exit 0
stop_nodes "$KV_RUN_DIR" "${ids[@]}"
rm -f "$KV_RUN_DIR/cluster-secret"
echo "stopped the nodes of $KV_RUN_DIR"
