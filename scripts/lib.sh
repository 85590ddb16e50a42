# Common environment of the project's scripts; sourced, not run.
# shellcheck shell=bash
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$HOME/.cargo/bin:$HOME/.local/bin:$PATH"
cd "$ROOT" || exit 1

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# apt_install_without_services UNITS PKG...: installs Debian packages whose own services must
# not run (the project starts the daemons itself, on 127.0.0.1 and free ports): no service starts
# during the install (policy-rc.d, unless the machine has its own), and the comma-separated
# systemd UNITS are disabled at boot afterwards.
apt_install_without_services() {
  local units=$1; shift
  log "installing $* (Debian)"
  local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  local policy_rc=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    policy_rc=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy_rc" >/dev/null
    $sudo chmod 0755 "$policy_rc"
  fi
  local installed=1
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null || installed=0
  [[ -z $policy_rc ]] || $sudo rm -f "$policy_rc"
  ((installed)) || die "apt-get install $* failed"
  if [[ -n $policy_rc ]] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    local unit
    for unit in ${units//,/ }; do
      $sudo systemctl disable --quiet "$unit" 2>/dev/null || true
    done
  fi
}

# Installs the Terraform toolchain if missing, exports its environment, defines
# `tf` (terraform in $TF_DIR) and `color` (-no-color when stderr is no
# terminal), and runs `terraform init`. Used by deploy.sh and destroy.sh.
terraform_init() {
  "$ROOT/scripts/install-terraform.sh" >&2
  local line
  while IFS= read -r line; do
    export "${line?}"
  done < <("$ROOT/scripts/install-terraform.sh" --print-env)
  tf() { "$TERRAFORM" -chdir="$TF_DIR" "$@"; }
  # shellcheck disable=SC2034 # used by the scripts that call terraform_init
  {
    color=()
    [[ -t 2 ]] || color=(-no-color)
  }
  # -upgrade: the lock file follows whichever provider source this machine has
  # (the offline mirror here, the registry elsewhere).
  local init_out
  if ! init_out=$(tf init -input=false -upgrade 2>&1); then
    echo "$init_out" >&2
    die "terraform init failed"
  fi
}
