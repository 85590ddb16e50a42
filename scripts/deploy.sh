#!/usr/bin/env bash
# Deploys a cluster of kv-node processes on this machine through Terraform (terraform/), waits
# until every node answers /health, and prints the dashboard URL. Idempotent: run it again and
# nothing changes; run it with another preset (or other -var values) and the cluster is
# re-deployed. Stop it with scripts/destroy.sh.
#
# Usage: scripts/deploy.sh [PRESET] [terraform apply options, e.g. -var base_port=9000]
#   PRESET  lf-w3r3 (default: leader-follower N=5 W=3 R=3), lf-w5r1, lf-w1r5, leaderless
#           (terraform/presets/PRESET.tfvars)
#
# Environment:
#   KV_NODE_BIN   the kv-node executable (default: ${CARGO_TARGET_DIR:-target}/release/kv-node)
#   KV_BASE_PORT  port of node 1 (default 8080); node i listens on KV_BASE_PORT + i - 1
#   KV_TF_HOME, KV_TERRAFORM   where the Terraform toolchain is, which terraform to run
#                              (see scripts/install-terraform.sh)
set -euo pipefail
caller_dir=$PWD
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
fi

preset=lf-w3r3
if [[ $# -gt 0 && $1 != -* ]]; then
    preset=$1
    shift
fi
TF_DIR="$ROOT/terraform"
if [[ ! -f "$TF_DIR/presets/$preset.tfvars" ]]; then
    presets=("$TF_DIR"/presets/*.tfvars)
    presets=("${presets[@]##*/}")
    die "unknown preset '$preset'; presets: ${presets[*]%.tfvars}"
fi

target_dir="${CARGO_TARGET_DIR:-$ROOT/target}"
[[ $target_dir == /* ]] || target_dir="$ROOT/$target_dir"
KV_NODE_BIN="${KV_NODE_BIN:-$target_dir/release/kv-node}"
[[ $KV_NODE_BIN == /* ]] || KV_NODE_BIN="$caller_dir/$KV_NODE_BIN"
[[ -x $KV_NODE_BIN ]] ||
    die "no kv-node executable at $KV_NODE_BIN; build it (cargo build --release -p kv-node) or set KV_NODE_BIN"

terraform_init

log "deploying preset $preset with $KV_NODE_BIN"
apply=(apply "${color[@]}" -auto-approve -input=false -var-file="presets/$preset.tfvars" -var "kv_node_binary=$KV_NODE_BIN")
if [[ -n ${KV_BASE_PORT:-} ]]; then
    apply+=(-var "base_port=$KV_BASE_PORT")
fi
apply+=("$@")
tf "${apply[@]}" >&2 || die "terraform apply failed (the reason is above)"

# Terraform does not watch the processes: a node that died since the last deployment is
# restarted by replacing the cluster.
mapfile -t urls < <(tf output -json node_urls | tr -d '[]" ' | tr ',' '\n' | sed '/^$/d')
for url in "${urls[@]}"; do
    if ! curl --noproxy "*" -fsS -o /dev/null --max-time 2 "$url/health"; then
        log "$url does not answer /health; re-deploying the cluster"
        tf "${apply[@]}" -replace='module.local[0].null_resource.cluster' >&2 ||
            die "terraform apply failed (the reason is above)"
        break
    fi
done

echo "Nodes:     ${urls[*]}"
echo "Try:"
tf output -raw try_curl | sed 's/^/  /'
echo
echo "Logs:      $(tf output -raw log_dir)"
echo "Dashboard: $(tf output -raw dashboard_url)"
