#!/usr/bin/env bash
# Writes the deployment's cluster secret to KV_SECRET_FILE (mode 0600): KV_CLUSTER_SECRET when
# given, else 32 random bytes in base64. Every node's copy comes from this file.
set -euo pipefail
: "${KV_SECRET_FILE:?}"
mkdir -p "$(dirname "$KV_SECRET_FILE")"
umask 077
if [[ -n ${KV_CLUSTER_SECRET:-} ]]; then
    printf '%s\n' "$KV_CLUSTER_SECRET" >"$KV_SECRET_FILE.new"
else
    head -c 32 /dev/urandom | base64 | tr -d '\n=' >"$KV_SECRET_FILE.new"
    echo >>"$KV_SECRET_FILE.new"
fi
mv -f "$KV_SECRET_FILE.new" "$KV_SECRET_FILE"
