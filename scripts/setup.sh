#!/usr/bin/env bash
# Installs what the project needs and is missing, and nothing else. Idempotent:
# when everything is present it only checks, in a few seconds.
#   - the wasm32-unknown-unknown Rust target
#   - trunk 0.21.14 (builds the dashboard)
#   - wasm-bindgen-cli at exactly the version of wasm-bindgen in Cargo.lock
#   - Chromium and ChromeDriver from Debian (browser tests)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

TRUNK_VERSION=0.21.14

need_apt=()
command -v chromium >/dev/null || need_apt+=(chromium)
command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
if ((${#need_apt[@]})); then
  log "installing ${need_apt[*]} (Debian)"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  log "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
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
