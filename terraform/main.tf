# A kv-store deployment is two layers:
#
#   modules/cluster  what to run: node ids, roles, ports, URLs and the exact kv-node flags of
#                    every node. Pure computation, no resources, the same for every target.
#   modules/local    where to run it: kv-node processes on this machine, started in the
#                    background with pid and log files, stopped again on destroy.
#
# Another target (hosts over SSH, a cloud) is one more module beside modules/local taking the
# same inputs (nodes, kv_node_binary, run_dir, environment, health_timeout_seconds), one more
# module block below with `count = var.target == "NAME" ? 1 : 0`, and NAME added to the
# validation of var.target. modules/cluster and modules/local stay as they are.

locals {
  all_interfaces = contains(["0.0.0.0", "::"], var.bind_address)
  advertise_host = var.advertise_host != null ? var.advertise_host : (local.all_interfaces ? "127.0.0.1" : var.bind_address)
  kv_node_binary = abspath(var.kv_node_binary != null ? var.kv_node_binary : "${path.root}/../target/release/kv-node")
  log_dir        = abspath(var.log_dir != null ? var.log_dir : "${path.root}/.run")
  # The token reaches the nodes through their environment (never their command line).
  # nonsensitive: provisioners hide all of their output when their configuration holds a
  # sensitive value, and the start script's output is what explains a failed start.
  admin_token      = nonsensitive(var.admin_token)
  node_environment = local.admin_token == "" ? {} : { ADMIN_TOKEN = local.admin_token }
}

module "cluster" {
  source = "./modules/cluster"

  mode          = var.mode
  replicas      = var.replicas
  w             = var.w
  r             = var.r
  base_port     = var.base_port
  bind_address  = var.bind_address
  hosts         = [local.advertise_host]
  delay_profile = var.delay_profile
  extra_args    = var.extra_args
}

module "local" {
  source = "./modules/local"
  count  = var.target == "local" ? 1 : 0

  nodes                  = module.cluster.nodes
  kv_node_binary         = local.kv_node_binary
  run_dir                = local.log_dir
  environment            = local.node_environment
  health_timeout_seconds = var.health_timeout_seconds
}
