# Runs the planned nodes as kv-node processes on this machine.
#
# One null_resource stands for the whole cluster, so that a change of anything (mode, W, R,
# ports, the binary) stops every old node before any new one starts. Its create-time
# provisioner (scripts/start.sh) starts every node detached from Terraform (setsid nohup),
# records "pid starttime" in run_dir/node-ID.pid, waits until each answers /health, and on any
# failure prints the node's log tail, stops the nodes it started and fails. Its destroy-time
# provisioner (scripts/stop.sh) stops exactly the recorded processes: a pid is signalled only
# if /proc still shows the same start time and a kv-node command line.
#
# Destroy-time provisioners may only use self, so everything stop.sh needs is in triggers.
# Terraform does not watch the processes: if a node dies, `terraform apply` sees no change;
# `terraform apply -replace=module.local[0].null_resource.cluster` restarts the cluster.

locals {
  # One line per node, tab-separated: id, role, bind, port, url, then its kv-node flags.
  spec = join("\n", [for n in var.nodes : join("\t", concat([tostring(n.id), n.role, n.bind, tostring(n.port), n.url], n.args))])
}

resource "null_resource" "cluster" {
  triggers = {
    spec               = local.spec
    node_ids           = join(" ", [for n in var.nodes : tostring(n.id)])
    kv_node_binary     = var.kv_node_binary
    binary_sha256      = fileexists(var.kv_node_binary) ? filesha256(var.kv_node_binary) : "missing"
    environment_sha256 = sha256(jsonencode(var.environment))
    run_dir            = var.run_dir
  }

  provisioner "local-exec" {
    interpreter = ["bash"]
    command     = "${path.module}/scripts/start.sh"
    environment = {
      KV_NODE_BINARY    = self.triggers.kv_node_binary
      KV_RUN_DIR        = self.triggers.run_dir
      KV_SPEC           = self.triggers.spec
      KV_NODE_ENV       = join("\n", [for k, v in var.environment : "${k}=${v}"])
      KV_HEALTH_TIMEOUT = tostring(var.health_timeout_seconds)
    }
  }

  provisioner "local-exec" {
    when        = destroy
    interpreter = ["bash"]
    command     = "${path.module}/scripts/stop.sh"
    environment = {
      KV_RUN_DIR  = self.triggers.run_dir
      KV_NODE_IDS = self.triggers.node_ids
    }
  }
}
