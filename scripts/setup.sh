#!/usr/bin/env bash
# Installs what the project needs and is missing, and nothing else. Idempotent:
# when everything is present it only checks, in a few seconds.
#   - the wasm32-unknown-unknown Rust target
#   - trunk 0.21.14 (builds the dashboard)
#   - wasm-bindgen-cli at exactly the version of wasm-bindgen in Cargo.lock
#   - Terraform (scripts/install-terraform.sh)
#   - brotli from Debian (scripts/build.sh compresses the dashboard with it)
# With --tests (scripts/test.sh), also what only the tests need:
#   - Chromium and ChromeDriver from Debian (browser tests)
#   - openssh-server, iproute2 and podman from Debian (the SSH deployment test runs sshd in
#     network namespaces; the container test builds the image with podman)
#   - the x86_64-unknown-linux-musl Rust target (the static kv-node: scripts/build.sh --static)
#   - schemathesis from PyPI, pinned, in its own virtualenv (~/.cache/kv-store/schemathesis-venv;
#     node/tests/openapi.rs checks GET /openapi.json against real nodes with it)
#
# Usage: scripts/setup.sh [--tests]
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

TRUNK_VERSION=0.21.14
# The version node/tests/openapi.rs was checked with; its path is the one that test looks in.
SCHEMATHESIS_VERSION=4.32.5
SCHEMATHESIS_VENV="$HOME/.cache/kv-store/schemathesis-venv"

for_tests=0
case "${1:-}" in
  "") ;;
  --tests) for_tests=1 ;;
  -h | --help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown option $1 (scripts/setup.sh --help)" ;;
esac

need_apt=()
command -v brotli >/dev/null || need_apt+=(brotli)
if ((for_tests)); then
  command -v chromium >/dev/null || need_apt+=(chromium)
  command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
  [ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
  [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || need_apt+=(iproute2)
  command -v podman >/dev/null || need_apt+=(podman)
  command -v python3 >/dev/null || need_apt+=(python3)
  # Debian's python3 creates virtualenvs only with python3-venv (ensurepip).
  python3 -c 'import ensurepip' 2>/dev/null || need_apt+=(python3-venv)
fi
# The tests start sshd themselves, in network namespaces: the package's own service (an sshd on
# port 22 of every interface) must not run.
((${#need_apt[@]})) && apt_install_without_services ssh.service,ssh.socket "${need_apt[@]}"

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  log "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

# The static kv-node (scripts/build.sh --static): Rust's musl target ships its own C library
# and start files, so no musl-gcc is needed (the static node has no C dependency: mimalloc, built
# with the cc that links every Rust binary, is the allocator of the glibc build only).
if ((for_tests)) && ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
  log "adding the x86_64-unknown-linux-musl target"
  rustup target add x86_64-unknown-linux-musl
fi

# schemathesis, the property-based API tester of node/tests/openapi.rs, in a virtualenv of its own
# (no system Python package is touched); skipped when that version is there.
if ((for_tests)) && ! "$SCHEMATHESIS_VENV/bin/st" --version 2>/dev/null | grep -q " $SCHEMATHESIS_VERSION\$"; then
  log "installing schemathesis $SCHEMATHESIS_VERSION (PyPI) into $SCHEMATHESIS_VENV"
  python3 -m venv "$SCHEMATHESIS_VENV"
  "$SCHEMATHESIS_VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

if ! trunk --version 2>/dev/null | grep -q " $TRUNK_VERSION"; then
  log "installing trunk $TRUNK_VERSION (takes several minutes once)"
  cargo install --locked "trunk@$TRUNK_VERSION"
fi

# wasm-bindgen-cli must match the wasm-bindgen library the UI links exactly.
WBG_VERSION="$(awk '/^name = "wasm-bindgen"$/ {getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)"
[ -n "$WBG_VERSION" ] || die "no wasm-bindgen in Cargo.lock"
if ! wasm-bindgen --version 2>/dev/null | grep -q " $WBG_VERSION\$"; then
  log "installing wasm-bindgen-cli $WBG_VERSION (takes a few minutes once)"
  # Not --locked: its own lock file pins a crate version the registry no longer serves.
  cargo install wasm-bindgen-cli --version "$WBG_VERSION"
fi

if [ -x scripts/install-terraform.sh ]; then
  scripts/install-terraform.sh
fi
