#!/usr/bin/env bash
# Stops the cluster that scripts/deploy.sh started (terraform destroy): exactly the kv-node
# processes recorded at deployment, nothing else. Does nothing when nothing is deployed.
# Nodes of a deployment interrupted before Terraform recorded it (pid files in terraform/.run
# but no state) are stopped too.
#
# Usage: scripts/destroy.sh [terraform destroy options]
# Environment: KV_TF_HOME, KV_TERRAFORM (see scripts/install-terraform.sh)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
fi

TF_DIR="$ROOT/terraform"
if [[ ! -s "$TF_DIR/terraform.tfstate" ]] || ! grep -q '"type": "null_resource"' "$TF_DIR/terraform.tfstate"; then
    # Pid files without state: a deployment interrupted before Terraform recorded it.
    ids=()
    for file in "$TF_DIR"/.run/node-*.pid; do
        [[ -e $file ]] || continue
        id=${file##*/node-}
        ids+=("${id%.pid}")
    done
    if ((${#ids[@]})); then
        log "no deployment in the Terraform state; stopping the nodes recorded in $TF_DIR/.run"
        KV_RUN_DIR="$TF_DIR/.run" KV_NODE_IDS="${ids[*]}" bash "$TF_DIR/modules/local/scripts/stop.sh" >&2
    else
        log "no deployment to destroy"
    fi
    exit 0
fi

terraform_init
log "destroying the deployment"
tf destroy "${color[@]}" -auto-approve -input=false "$@" >&2 ||
    die "terraform destroy failed (the reason is above)"
log "deployment destroyed"
