#!/usr/bin/env bash
# Builds everything and starts the default deployment — a leader-follower
# cluster of five kv-node processes, W=3 R=3, deployed by Terraform — then
# prints the dashboard URL. Stop it with scripts/down.sh.
#
# Usage: scripts/up.sh [PRESET] [terraform apply options]   (see scripts/deploy.sh --help)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"
scripts/setup.sh
scripts/build.sh
exec scripts/deploy.sh "$@"
