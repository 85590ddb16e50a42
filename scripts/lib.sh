# Common environment of the project's scripts; sourced, not run.
# shellcheck shell=bash
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$HOME/.cargo/bin:$HOME/.local/bin:$PATH"
cd "$ROOT" || exit 1

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

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
