#!/usr/bin/env bash
# Waits, from the machine that runs Terraform, until every node answers /health with
# "ready":true (leader-follower: a leader is elected, known and its term has started).
#
# Environment (set by null_resource.ready in ../main.tf):
#   KV_URLS            the node URLs, space-separated
#   KV_HEALTH_TIMEOUT  seconds to wait for all of them
set -euo pipefail
: "${KV_URLS:?}"
timeout_s=${KV_HEALTH_TIMEOUT:-30}
command -v curl >/dev/null || { echo "ERROR: curl is required to check the nodes' /health"; exit 1; }
read -r -a urls <<<"$KV_URLS"
deadline=$((SECONDS + timeout_s))
for url in "${urls[@]}"; do
    until body=$(curl --noproxy "*" -fsS --max-time 2 "$url/health" 2>&1) && grep -q '"ready":true' <<<"$body"; do
        if ((SECONDS >= deadline)); then
            echo "ERROR: $url/health did not answer \"ready\":true within $timeout_s s (last answer: ${body:-none})."
            echo "The node runs (it listens on its host); check that this machine reaches its port"
            echo "(firewall), and that the hosts reach each other on the node ports. Its log:"
            echo "kv-node.log in its directory on the host (terraform output log_dir)."
            exit 1
        fi
        sleep 0.5
    done
    echo "$url is ready"
done
echo "all ${#urls[@]} nodes answer /health and are ready"
