#!/usr/bin/env bash
# Deploys a cluster of kv-node processes on this machine (or, with KV_TARGET=ssh, on hosts
# over SSH) through Terraform (terraform/), waits until every node answers /health, and prints
# the dashboard URL and the admin token. Idempotent: run it again and nothing changes; run it
# with another preset (or other -var values) and the cluster is re-deployed. Stop it with
# scripts/destroy.sh.
#
# The admin token: every node is started with one, needed for its admin calls (W/R, the delay
# profile, fault injection; the dashboard asks for it once). Unless KV_ADMIN_TOKEN gives it, a
# random one is generated on the first deployment into terraform/.run/admin-token (mode 0600) and
# reused by every later one, so re-deploying keeps it (delete the file for a new one). It reaches
# the nodes through their environment, never a command line, and is printed at the end.
#
# Usage: scripts/deploy.sh [PRESET] [terraform apply options, e.g. -var base_port=9000]
#   PRESET  lf-w3r3 (default: leader-follower N=5 W=3 R=3), lf-w5r1, lf-w1r5, leaderless
#           (terraform/presets/PRESET.tfvars)
#   KV_TARGET=ssh scripts/deploy.sh lf-w3r3 -var-file=hosts.tfvars   (hosts.tfvars in terraform/:
#           the hosts variable; see docs/operations.md, "Hosts over SSH")
#
# Environment:
#   KV_TARGET     local (default) or ssh
#   KV_NODE_BIN   the kv-node executable (default: ${CARGO_TARGET_DIR:-target}/release/kv-node;
#                 KV_TARGET=ssh: the static .../x86_64-unknown-linux-musl/release/kv-node)
#   KV_BASE_PORT  port of node 1 (default 8080); node i listens on KV_BASE_PORT + i - 1
#                 (over SSH: the k-th node of a host on KV_BASE_PORT + k - 1)
#   KV_ADMIN_TOKEN  the nodes' admin token (default: the one in terraform/.run/admin-token,
#                 generated there when missing); `-var admin_token=...` wins over both
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
target=${KV_TARGET:-local}
case $target in
local)
    KV_NODE_BIN="${KV_NODE_BIN:-$target_dir/release/kv-node}"
    build="cargo build --release -p kv-node"
    ;;
ssh)
    KV_NODE_BIN="${KV_NODE_BIN:-$target_dir/x86_64-unknown-linux-musl/release/kv-node}"
    build="scripts/build.sh --static"
    ;;
*) die "KV_TARGET must be local or ssh, not '$target'" ;;
esac
[[ $KV_NODE_BIN == /* ]] || KV_NODE_BIN="$caller_dir/$KV_NODE_BIN"
[[ -x $KV_NODE_BIN ]] ||
    die "no kv-node executable at $KV_NODE_BIN; build it ($build) or set KV_NODE_BIN"

# The admin token: given, or this deployment's own (generated once, then reused). Terraform
# reads it from its environment (TF_VAR_), which other users cannot see.
token_file="$TF_DIR/.run/admin-token"
if [[ -z ${KV_ADMIN_TOKEN:-} ]]; then
    if [[ ! -s $token_file ]]; then
        mkdir -p "$(dirname "$token_file")"
        (umask 077 && head -c 24 /dev/urandom | base64 | tr '+/' '-_' | tr -d '\n=' >"$token_file.new" &&
            mv "$token_file.new" "$token_file")
        log "generated an admin token in $token_file"
    fi
    KV_ADMIN_TOKEN=$(head -n 1 "$token_file")
fi
[[ $KV_ADMIN_TOKEN =~ ^[A-Za-z0-9._~+/=-]{16,256}$ ]] ||
    die "the admin token must be 16 to 256 characters of A-Z a-z 0-9 . _ ~ + / = - (got ${#KV_ADMIN_TOKEN} characters; see $token_file)"
export TF_VAR_admin_token=$KV_ADMIN_TOKEN

terraform_init

log "deploying preset $preset ($target) with $KV_NODE_BIN"
apply=(apply "${color[@]}" -auto-approve -input=false -var-file="presets/$preset.tfvars" -var "target=$target" -var "kv_node_binary=$KV_NODE_BIN")
if [[ -n ${KV_BASE_PORT:-} ]]; then
    apply+=(-var "base_port=$KV_BASE_PORT")
fi
apply+=("$@")
tf "${apply[@]}" >&2 || die "terraform apply failed (the reason is above)"

# Terraform does not watch the processes: a node that died since the last deployment is
# restarted by replacing the cluster (over SSH: by replacing that node).
mapfile -t urls < <(tf output -json node_urls | tr -d '[]" ' | tr ',' '\n' | sed '/^$/d')
replace=()
for i in "${!urls[@]}"; do
    if ! curl --noproxy "*" -fsS -o /dev/null --max-time 2 "${urls[$i]}/health"; then
        log "${urls[$i]} does not answer /health; re-deploying it"
        if [[ $target == local ]]; then
            replace=(-replace='module.local[0].null_resource.cluster')
            break
        fi
        replace+=(-replace="module.ssh[0].null_resource.node[\"$((i + 1))\"]")
    fi
done
if ((${#replace[@]})); then
    tf "${apply[@]}" "${replace[@]}" >&2 || die "terraform apply failed (the reason is above)"
fi

echo "Nodes:     ${urls[*]}"
echo "Try:"
tf output -raw try_curl | sed 's/^/  /'
echo
if [[ $target == local ]]; then
    echo "Logs:      $(tf output -raw log_dir)"
else
    echo "Logs:"
    tf output -json log_files | tr -d '{}"' | tr ',' '\n' | sed '/^$/d; s/^/  node /'
fi
echo "Dashboard: $(tf output -raw dashboard_url)"
# The token in force (a -var admin_token=... on the command line wins over the generated one).
echo "Admin token: $(tf output -raw admin_token)   (the dashboard asks for it: faults, delays, W/R; kept in $token_file)"
