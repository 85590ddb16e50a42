#!/usr/bin/env bash
# Builds the dashboard (trunk, release), writes a brotli (.br) and a gzip (.gz) copy of each of
# its files (the node serves them to browsers that accept them), then builds the release
# binaries, which embed it.
#
# Usage:
#   scripts/build.sh           kv-node and kv-loadtester for this machine (target/release/)
#   scripts/build.sh --static  kv-node only, statically linked against musl, for any Linux
#                              x86_64 host: target/x86_64-unknown-linux-musl/release/kv-node
#                              (what the SSH deployment copies and the container image holds)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "$0")/lib.sh"

STATIC_TARGET=x86_64-unknown-linux-musl
static=0
case "${1:-}" in
"") ;;
--static) static=1 ;;
-h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
*) die "unknown argument '$1' (see --help)" ;;
esac

# The dashboard is embedded at compile time, and cargo does not notice new files in
# web-ui/dist: when the build differs from the one the binary $1 embedded (its hash is kept
# in $1.dashboard), the node's own compiled crate is removed so that cargo compiles it again
# (cargo clean -p ARGS...; its dependencies stay built).
embed_fresh_dashboard() {
    local stamp="$1.dashboard" now
    shift
    now=$(cd web-ui/dist && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum)
    if [[ ! -f $stamp || $(cat "$stamp") != "$now" ]]; then
        cargo clean --quiet --release -p kv-node "$@"
    fi
    echo "$now" >"$stamp.next"
}

# Writes FILE.br (brotli, quality 11) and FILE.gz (gzip -9) beside each file of web-ui/dist;
# trunk empties web-ui/dist on every build, so none is stale.
precompress_dashboard() {
    command -v brotli >/dev/null || die "brotli is missing: apt-get install brotli (scripts/setup.sh does)"
    local f
    while IFS= read -r -d '' f; do
        brotli --force --quality=11 --keep --output="$f.br" -- "$f"
        gzip --force --best --no-name --keep -- "$f"
    done < <(find web-ui/dist -type f ! -name '*.br' ! -name '*.gz' -print0)
    log "dashboard: $(du -cb web-ui/dist/*.wasm | tail -1 | cut -f1) bytes of wasm, $(du -cb web-ui/dist/*.wasm.br | tail -1 | cut -f1) brotli, $(du -cb web-ui/dist/*.wasm.gz | tail -1 | cut -f1) gzip"
}

target_dir="${CARGO_TARGET_DIR:-target}"
log "building the dashboard (trunk build --release)"
trunk build --release --offline
precompress_dashboard
if ((static)); then
    rustup target list --installed 2>/dev/null | grep -qx "$STATIC_TARGET" ||
        die "the Rust target $STATIC_TARGET is missing: rustup target add $STATIC_TARGET (scripts/setup.sh --tests does)"
    bin="$target_dir/$STATIC_TARGET/release/kv-node"
    mkdir -p "$(dirname "$bin")"
    embed_fresh_dashboard "$bin" --target "$STATIC_TARGET"
    log "building the static kv-node (release, $STATIC_TARGET)"
    # The musl target brings its own C library and linker start files: no musl-gcc needed,
    # as nothing in the node's dependencies compiles C.
    cargo build --release --target "$STATIC_TARGET" -p kv-node
    mv -f "$bin.dashboard.next" "$bin.dashboard"
    log "static kv-node: $bin ($(du -h "$bin" | cut -f1))"
else
    bin="$target_dir/release/kv-node"
    mkdir -p "$(dirname "$bin")"
    embed_fresh_dashboard "$bin"
    log "building kv-node and kv-loadtester (release)"
    cargo build --release -p kv-node -p kv-loadtester
    mv -f "$bin.dashboard.next" "$bin.dashboard"
fi
