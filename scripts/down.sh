#!/usr/bin/env bash
# Stops what scripts/up.sh started (terraform destroy of the local cluster).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
exec scripts/destroy.sh "$@"
