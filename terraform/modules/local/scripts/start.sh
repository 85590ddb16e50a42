#!/usr/bin/env bash
# Starts the nodes of a deployment in the background and waits until each answers /health.
#
# Environment (set by the null_resource in ../main.tf):
#   KV_NODE_BINARY     kv-node executable
#   KV_RUN_DIR         directory for node-ID.pid and node-ID.log
#   KV_SPEC            one line per node, tab-separated: id, role, bind, port, url, kv-node flags...
#   KV_NODE_ENV        KEY=VALUE lines given to every node (may be empty); a CLUSTER_SECRET_FILE
#                      among them is (re)written with a new random secret before the nodes start
#   KV_HEALTH_TIMEOUT  seconds to wait for all nodes to answer /health
#
# On any failure: prints the reason and the failing node's log tail, stops every node this run
# started, exits 1. Nodes started by an earlier, interrupted run in the same run dir are
# stopped first.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR
source "$here/lib.sh"

# Terraform leaves some descriptors of its own open in this script (duplicates of its stdout
# among them). A node that inherited one would keep whoever reads Terraform's output waiting
# until the node stops, so everything but stdin, stdout and stderr is closed here.
for fd in "/proc/$$/fd/"*; do
    fd=${fd##*/}
    if ((fd > 2 && fd != 255)); then
        eval "exec $fd>&-"
    fi
done

: "${KV_NODE_BINARY:?}" "${KV_RUN_DIR:?}" "${KV_SPEC:?}"
timeout_s=${KV_HEALTH_TIMEOUT:-30}
started=()

# fail ID MESSAGE: explains, shows node ID's log tail (if ID is not empty), cleans up, exits 1.
fail() {
    local id=$1 log="$KV_RUN_DIR/node-$1.log"
    shift
    echo "ERROR: $*"
    if [[ -n $id && -s $log ]]; then
        echo "---- last 20 lines of $log ----"
        tail -n 20 "$log"
        echo "----"
    fi
    if ((${#started[@]})); then
        echo "stopping the node(s) this run started: ${started[*]}"
        stop_nodes "$KV_RUN_DIR" "${started[@]}" || true
    fi
    exit 1
}

# Whether something accepts TCP connections on host $1 port $2.
port_in_use() {
    # shellcheck disable=SC2016 # $1 and $2 belong to the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

[[ -x $KV_NODE_BINARY ]] ||
    fail "" "kv-node binary not found or not executable at $KV_NODE_BINARY (build it with: cargo build --release -p kv-node)"
command -v curl >/dev/null || fail "" "curl is required to check the nodes' /health"
mkdir -p "$KV_RUN_DIR"

# Leftovers of an interrupted run of this deployment (pid files without Terraform state).
leftovers=()
for file in "$KV_RUN_DIR"/node-*.pid; do
    [[ -e $file ]] || continue
    id=${file##*/node-}
    leftovers+=("${id%.pid}")
done
if ((${#leftovers[@]})); then
    echo "stopping nodes left from an earlier run in $KV_RUN_DIR: ${leftovers[*]}"
    stop_nodes "$KV_RUN_DIR" "${leftovers[@]}" || fail "" "could not stop the nodes left from an earlier run"
fi

node_env=()
if [[ -n ${KV_NODE_ENV:-} ]]; then
    mapfile -t node_env <<<"$KV_NODE_ENV"
fi
# A cluster secret named by file and not given: a new random one, readable by its owner only.
for kv in "${node_env[@]}"; do
    if [[ $kv == CLUSTER_SECRET_FILE=* ]]; then
        secret_file=${kv#CLUSTER_SECRET_FILE=}
        (umask 077 && head -c 32 /dev/urandom | base64 | tr -d '\n=' >"$secret_file.new" && mv "$secret_file.new" "$secret_file")
    fi
done

declare -A urls=() pids=() starts=()
while IFS=$'\t' read -r -a fields; do
    id=${fields[0]} role=${fields[1]} bind=${fields[2]} port=${fields[3]} url=${fields[4]}
    args=("${fields[@]:5}")
    check_host=$bind
    [[ $bind != 0.0.0.0 && $bind != :: ]] || check_host=127.0.0.1
    if port_in_use "$check_host" "$port"; then
        fail "" "node $id: port $port on $check_host is already in use by another process; pick another base_port (e.g. -var base_port=...) or stop that process"
    fi
    log="$KV_RUN_DIR/node-$id.log" pidfile="$KV_RUN_DIR/node-$id.pid"
    : >"$log"
    # The shell writes its own pid, then becomes kv-node (exec keeps the pid).
    # shellcheck disable=SC2016 # $$, $0 and $@ belong to the inner sh
    env -i PATH="$PATH" HOME="${HOME:-/}" NO_COLOR=1 KV_DEPLOYMENT_NODE="$KV_RUN_DIR/node-$id" \
        "${node_env[@]}" setsid nohup sh -c 'echo $$ >"$0.new" && mv "$0.new" "$0" && exec "$@"' \
        "$pidfile" "$KV_NODE_BINARY" "${args[@]}" </dev/null >>"$log" 2>&1 &
    started+=("$id")
    for ((tries = 0; tries < 100; tries++)); do
        [[ -s $pidfile ]] && break
        sleep 0.05
    done
    [[ -s $pidfile ]] || fail "$id" "node $id: no pid file after 5 s"
    read -r pid <"$pidfile"
    start=$(proc_starttime "$pid") || fail "$id" "node $id ($url) exited at once; see its log"
    echo "$pid $start" >"$pidfile"
    urls[$id]=$url pids[$id]=$pid starts[$id]=$start
    echo "node $id ($role): pid $pid, $url, log $log"
done <<<"$KV_SPEC"

deadline=$((SECONDS + timeout_s))
for id in "${started[@]}"; do
    # Ready, not only alive: in leader-follower mode a node says "ready":true once a leader is
    # elected, known to it, and its term has started (writes before that answer 503).
    until curl --noproxy "*" -fsS --max-time 2 "${urls[$id]}/health" 2>/dev/null | grep -q '"ready":true'; do
        is_our_node "${pids[$id]}" "${starts[$id]}" ||
            fail "$id" "node $id (${urls[$id]}) exited during start; see its log"
        ((SECONDS < deadline)) ||
            fail "$id" "node $id did not answer ${urls[$id]}/health within ${timeout_s} s"
        sleep 0.2
    done
done
# A /health answer could come from another process that took a port after the check above.
for id in "${started[@]}"; do
    is_our_node "${pids[$id]}" "${starts[$id]}" ||
        fail "$id" "node $id (${urls[$id]}) exited during start; see its log"
done
echo "all ${#started[@]} nodes answer /health and are ready"
