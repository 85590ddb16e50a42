#!/bin/sh
# Runs one kv-node on this host; copied next to it by Terraform (modules/ssh) and run over SSH.
# POSIX sh and coreutils only, so that it works on any Linux host.
#
#   node.sh start DIR      starts the node of DIR under systemd (when this is root on a host
#                          booted with systemd) or under the restart loop below, then waits
#                          until it listens; on failure prints its log tail, stops it, removes
#                          DIR, exits 1
#   node.sh stop DIR       stops it (SIGTERM, SIGKILL after 10 s) and removes its systemd unit
#   node.sh supervise DIR  the restart loop (started by `start`): runs DIR/run, restarts it
#                          when it exits (1 s, doubling to 30 s after quick exits), ends on
#                          SIGTERM after stopping the node
#
# DIR holds: kv-node, run (starts it: sources env, execs kv-node with its flags), env (mode
# 0600: the admin token and where the cluster secret is), cluster-secret (0600), this script,
# and what it writes: manager ("systemd UNIT" or "supervisor"), supervisor.pid, kv-node.pid,
# kv-node.log. A pid is signalled only while /proc/PID/cmdline names DIR, so a pid the kernel
# has since given to another process is never hit.
set -eu

usage() {
    echo "usage: node.sh start|stop|supervise DIR" >&2
    exit 2
}
[ $# -eq 2 ] || usage
cmd=$1
dir=$(cd "$2" && pwd) || exit 1
log=$dir/kv-node.log
start_timeout=${KV_START_TIMEOUT:-30}

# Whether pid $1 is alive and its command line names this node's directory.
ours() {
    [ -n "$1" ] && [ -r "/proc/$1/cmdline" ] || return 1
    { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null | grep -qF "$dir/" || return 1
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
    [ "$state" != Z ]
}

# Pids of every process of this node: the supervisor and kv-node (also orphans whose pid
# files are gone).
node_pids() {
    # One grep over every command line finds the few candidates; each is then checked exactly.
    grep -lsaF "$dir/" /proc/[0-9]*/cmdline | while IFS= read -r f; do
        p=${f#/proc/}
        p=${p%/cmdline}
        [ "$p" != $$ ] || continue
        if { tr '\0' ' ' <"$f"; } 2>/dev/null | grep -qE "^($dir/kv-node |sh $dir/node.sh supervise )"; then
            echo "$p"
        fi
    done
}

# The systemd unit of this node: only for root on a host booted with systemd.
use_systemd() {
    [ "$(id -u)" = 0 ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1
}
unit_name() {
    echo "kv-store-$(basename "$dir").service"
}

start_systemd() {
    unit=$(unit_name)
    file=/etc/systemd/system/$unit
    if [ -f "$file" ] && ! grep -qxF "WorkingDirectory=$dir" "$file"; then
        echo "ERROR: $file belongs to another deployment; stop it first (systemctl disable --now $unit)"
        exit 1
    fi
    cat >"$file.new" <<EOF
# Written by kv-store's Terraform (modules/ssh); removed by terraform destroy.
[Unit]
Description=kv-store node ($dir)
After=network-online.target
Wants=network-online.target

[Service]
WorkingDirectory=$dir
ExecStart=/bin/sh $dir/run
Environment=NO_COLOR=1
Restart=always
RestartSec=1
KillSignal=SIGTERM
TimeoutStopSec=15
StandardOutput=append:$log
StandardError=append:$log
NoNewPrivileges=yes

[Install]
WantedBy=multi-user.target
EOF
    mv "$file.new" "$file"
    echo "systemd $unit" >"$dir/manager"
    systemctl daemon-reload
    systemctl enable --now "$unit" >/dev/null 2>&1 || {
        echo "ERROR: systemctl enable --now $unit failed:"
        systemctl status --no-pager "$unit" 2>&1 | tail -n 20 || true
        return 1
    }
}

start_supervisor() {
    echo supervisor >"$dir/manager"
    if command -v setsid >/dev/null 2>&1; then
        setsid nohup sh "$dir/node.sh" supervise "$dir" </dev/null >>"$log" 2>&1 &
    else
        nohup sh "$dir/node.sh" supervise "$dir" </dev/null >>"$log" 2>&1 &
    fi
}

# A failed start removes what it installed: Terraform keeps the node as tainted and runs no
# destroy-time provisioner for it, so `terraform destroy` would not.
fail() {
    echo "ERROR: $*"
    if [ -s "$log" ]; then
        echo "---- last 20 lines of $log on $(hostname) ----"
        tail -n 20 "$log"
        echo "----"
    fi
    if stop_node >/dev/null 2>&1; then
        rm -rf "$dir"
        rmdir "$(dirname "$dir")" 2>/dev/null || true
        echo "$(hostname): stopped the node and removed $dir"
    fi
    exit 1
}

start_node() {
    : >"$log"
    chmod 0600 "$dir/env" "$dir/cluster-secret" "$log"
    chmod 0700 "$dir/kv-node" "$dir/run"
    if use_systemd; then
        start_systemd || fail "the systemd unit did not start"
        how="systemd unit $(unit_name)"
    else
        start_supervisor
        how="restart loop (pid file $dir/supervisor.pid)"
    fi
    # Started means: kv-node logged that it listens and still runs. Whether the cluster is
    # ready (a leader elected) is checked from the machine that runs Terraform.
    i=0
    while :; do
        pid=$(main_pid)
        if grep -q "listening on http://" "$log" 2>/dev/null && ours "$pid"; then
            break
        fi
        if grep -q "kv-node exited" "$log" 2>/dev/null; then
            fail "kv-node exited during start"
        fi
        i=$((i + 1))
        [ "$i" -le $((start_timeout * 5)) ] || fail "kv-node did not listen within $start_timeout s"
        sleep 0.2
    done
    echo "$pid" >"$dir/kv-node.pid"
    echo "$(hostname): kv-node pid $pid, $how, log $log"
}

# The pid of kv-node now: systemd's main pid of the unit, or what the restart loop recorded.
main_pid() {
    case $(cat "$dir/manager" 2>/dev/null || true) in
    systemd\ *) systemctl show -p MainPID "$(unit_name)" 2>/dev/null | sed -n 's/^MainPID=//p' ;;
    *) cat "$dir/kv-node.pid" 2>/dev/null || true ;;
    esac
}

# Sends signal $1 to every pid in $2.
signal_all() {
    for p in $2; do kill "-$1" "$p" 2>/dev/null || true; done
}

# Waits up to $1 s until no process of this node runs.
wait_stopped() {
    i=0
    while [ -n "$(node_pids)" ]; do
        i=$((i + 1))
        [ "$i" -le $(($1 * 10)) ] || return 1
        sleep 0.1
    done
}

stop_node() {
    manager=$(cat "$dir/manager" 2>/dev/null || true)
    case $manager in
    systemd\ *)
        unit=${manager#systemd }
        systemctl disable --now "$unit" >/dev/null 2>&1 || true
        rm -f "/etc/systemd/system/$unit"
        systemctl daemon-reload || true
        ;;
    esac
    # The supervisor first (it stops its kv-node on SIGTERM), then anything left.
    sup=$(cat "$dir/supervisor.pid" 2>/dev/null || true)
    if ours "$sup"; then
        kill -TERM "$sup" 2>/dev/null || true
    fi
    signal_all TERM "$(node_pids)"
    if ! wait_stopped 10; then
        echo "$(hostname): a process of $dir ignored SIGTERM for 10 s; sending SIGKILL"
        signal_all KILL "$(node_pids)"
        wait_stopped 5 || {
            echo "ERROR: processes of $dir still run: $(node_pids)"
            return 1
        }
    fi
    rm -f "$dir/supervisor.pid" "$dir/kv-node.pid" "$dir/manager"
    echo "$(hostname): stopped the node in $dir"
}

supervise() {
    echo $$ >"$dir/supervisor.pid"
    child=""
    stopping=0
    trap 'stopping=1; [ -z "$child" ] || kill -TERM "$child" 2>/dev/null || true' TERM INT HUP
    delay=1
    while [ "$stopping" = 0 ]; do
        started=$(date +%s)
        env -i PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
            HOME="${HOME:-/}" NO_COLOR=1 sh "$dir/run" &
        child=$!
        echo "$child" >"$dir/kv-node.pid"
        status=0
        wait "$child" || status=$?
        # A trapped signal ends `wait` early: wait again until kv-node has really exited.
        while kill -0 "$child" 2>/dev/null; do
            status=0
            wait "$child" || status=$?
        done
        child=""
        [ "$stopping" = 0 ] || break
        if [ $(($(date +%s) - started)) -ge 60 ]; then delay=1; fi
        echo "supervisor: kv-node exited with status $status; restarting in $delay s"
        sleep "$delay" &
        wait $! || true
        delay=$((delay * 2))
        [ "$delay" -le 30 ] || delay=30
    done
    rm -f "$dir/kv-node.pid" "$dir/supervisor.pid"
}

case $cmd in
start) start_node ;;
stop) stop_node ;;
supervise) supervise ;;
*) usage ;;
esac
