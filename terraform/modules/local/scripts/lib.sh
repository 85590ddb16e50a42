# shellcheck shell=bash
# Helpers shared by start.sh and stop.sh (sourced).
#
# A node's pid file, RUN_DIR/node-ID.pid, holds "PID STARTTIME": STARTTIME is field 22 of
# /proc/PID/stat (clock ticks since boot), so a pid the kernel has since given to another
# process is never taken for the node. Every node also carries the environment variable
# KV_DEPLOYMENT_NODE=RUN_DIR/node-ID, which finds it again should its pid file be lost.

# Prints the start time of process $1; fails when no such process runs (a zombie has ended).
proc_starttime() {
    local stat rest
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    rest=${stat##*) }
    local -a fields
    read -r -a fields <<<"$rest"
    [[ ${fields[0]} != Z && ${fields[0]} != X ]] || return 1
    echo "${fields[19]}"
}

# Whether pid $1, started at $2, is still a running kv-node process.
is_our_node() {
    local pid=$1 start=$2 now
    [[ $pid =~ ^[0-9]+$ && -n $start ]] || return 1
    now=$(proc_starttime "$pid") || return 1
    [[ $now == "$start" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q kv-node
}

# Prints "ID PID STARTTIME" for every running kv-node whose environment marks it as a node of
# the deployment in run dir $1 (one grep over /proc; other users' processes are not readable).
find_marked_nodes() {
    local prefix="KV_DEPLOYMENT_NODE=$1/node-" environ pid start id
    while IFS= read -r environ; do
        pid=${environ#/proc/}
        pid=${pid%/environ}
        id=$(tr '\0' '\n' <"$environ" 2>/dev/null | grep -m1 -F "$prefix") || continue
        id=${id#"$prefix"}
        start=$(proc_starttime "$pid") || continue
        if is_our_node "$pid" "$start"; then
            echo "$id $pid $start"
        fi
    done < <(grep -lzF "$prefix" /proc/[0-9]*/environ 2>/dev/null)
}

# Waits up to $1 seconds until none of the caller's pids/starts is running; fails on timeout.
wait_gone() {
    local deadline=$((SECONDS + $1)) i alive
    while :; do
        alive=0
        for i in "${!pids[@]}"; do
            if is_our_node "${pids[$i]}" "${starts[$i]}"; then alive=1; fi
        done
        ((alive)) || return 0
        ((SECONDS < deadline)) || return 1
        sleep 0.1
    done
}

# stop_nodes RUN_DIR ID...: sends SIGTERM to each node of the list that still runs, waits up
# to 10 s for them to exit, then SIGKILL and up to 5 s more. Removes their pid files; keeps
# their logs. Fails if a node is still running at the end.
stop_nodes() {
    local run_dir=$1
    shift
    local -a ids=() pids=() starts=()
    local id file pid start i marked="" scanned=0
    for id in "$@"; do
        file="$run_dir/node-$id.pid"
        pid="" start=""
        if [[ -f $file ]]; then
            read -r pid start <"$file" || true
        fi
        if ! is_our_node "$pid" "$start"; then
            # No pid file, or it names a process that is not the node (any more): the node, if
            # it still runs, is found by its environment marker.
            if ((!scanned)); then
                marked=$(find_marked_nodes "$run_dir")
                scanned=1
            fi
            if read -r _ pid start < <(grep "^$id " <<<"$marked"); then
                echo "node $id: found by its environment (pid $pid)"
            elif [[ -f $file ]]; then
                echo "node $id: had already stopped"
                rm -f "$file"
                continue
            else
                continue
            fi
        fi
        echo "node $id: stopping pid $pid"
        kill -TERM "$pid" 2>/dev/null || true
        ids+=("$id") pids+=("$pid") starts+=("$start")
    done
    ((${#pids[@]})) || return 0
    if ! wait_gone 10; then
        for i in "${!pids[@]}"; do
            if is_our_node "${pids[$i]}" "${starts[$i]}"; then
                echo "node ${ids[$i]}: pid ${pids[$i]} ignored SIGTERM for 10 s; sending SIGKILL"
                kill -KILL "${pids[$i]}" 2>/dev/null || true
            fi
        done
        wait_gone 5 || true
    fi
    local failed=0
    for i in "${!pids[@]}"; do
        if is_our_node "${pids[$i]}" "${starts[$i]}"; then
            echo "node ${ids[$i]}: pid ${pids[$i]} is still running" >&2
            failed=1
        else
            rm -f "$run_dir/node-${ids[$i]}.pid"
        fi
    done
    return "$failed"
}
