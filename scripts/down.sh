#!/usr/bin/env bash
# Stops what scripts/up.sh started (terraform destroy of the local cluster).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
exec scripts/destroy.sh "$@"
