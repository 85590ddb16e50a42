# Runs the planned nodes on machines the user already has, over SSH (target "ssh").
#
# One null_resource per node, so that a change that concerns one node (its host's SSH
# settings, say) replaces that node only; a change of anything the whole cluster shares (mode,
# W, R, the peer list, the binary, the token, the secret) replaces every node, each one
# stopped before its successor starts. Per node, Terraform's own SSH connection:
#
#   1. stops whatever an earlier, interrupted run left in REMOTE_DIR/node-ID, makes it afresh
#      (mode 0700);
#   2. copies kv-node (the static musl build: any Linux x86_64 host runs it), scripts/node.sh,
#      `run` (sources `env`, then execs kv-node with the node's flags: no secret among them),
#      `env` (mode 0600: the admin token and the name of the secret file) and `cluster-secret`
#      (0600);
#   3. `node.sh start`: under systemd when the SSH user is root on a host booted with systemd
#      (unit kv-store-node-ID.service, Restart=always), else under a restart loop started with
#      setsid nohup (pid file supervisor.pid); waits until kv-node listens, and on failure
#      prints its log tail, stops it and fails.
#
# Then null_resource.ready waits, from this machine, until every node answers /health with
# "ready":true. Destroy runs `node.sh stop` on each host (SIGTERM, SIGKILL after 10 s, the unit
# removed) and deletes REMOTE_DIR/node-ID, and REMOTE_DIR once empty; destroy-time provisioners
# and their connections may only use self, so the SSH settings are in the triggers.
#
# The cluster secret is a file in run_dir on this machine (given, or 32 random bytes; mode
# 0600, removed on destroy) copied to every node: CLUSTER_SECRET_FILE in the nodes' env.
# Terraform does not watch the processes: a node that died stays dead (the restart loop or
# systemd restarts a crashed kv-node, not a stopped one); `terraform apply
# -replace='module.ssh[0].null_resource.node["ID"]'` re-deploys one.

locals {
  remote_dir  = trimsuffix(var.remote_dir, "/")
  secret_file = "${var.run_dir}/cluster-secret"
  given       = lookup(var.environment, "CLUSTER_SECRET", "")
  # Every variable but the secret, which each node reads from its own copy.
  environment = merge(
    { for k, v in var.environment : k => v if !contains(["CLUSTER_SECRET", "CLUSTER_SECRET_FILE"], k) },
    { CLUSTER_SECRET_FILE = "cluster-secret" },
  )
  env_file = join("", concat(
    ["# kv-store node environment (mode 0600), sourced by ./run; relative paths: from this directory.\n"],
    [for k in sort(keys(local.environment)) : "${k}='${replace(local.environment[k], "'", "'\\''")}'\n"],
  ))
  nodes = { for n in var.nodes : tostring(n.id) => n }
  run_files = { for id, n in local.nodes : id => join("", [
    "#!/bin/sh\n",
    "# kv-store node ${id} (${n.role}), ${n.url}: reads ./env, then becomes kv-node with its flags.\n",
    "cd \"$(dirname \"$0\")\" || exit 1\n",
    "set -a\n. ./env\nset +a\n",
    "exec \"$PWD/kv-node\" ${join(" ", [for a in n.args : "'${replace(a, "'", "'\\''")}'"])}\n",
  ]) }
  binary_sha256 = fileexists(var.kv_node_binary) ? filesha256(var.kv_node_binary) : "missing"
}

resource "null_resource" "secret" {
  triggers = {
    file         = local.secret_file
    given_sha256 = local.given == "" ? "generated" : sha256(local.given)
  }

  provisioner "local-exec" {
    interpreter = ["bash"]
    command     = "${path.module}/scripts/secret.sh"
    environment = {
      KV_SECRET_FILE    = self.triggers.file
      KV_CLUSTER_SECRET = local.given
    }
  }

  provisioner "local-exec" {
    when        = destroy
    interpreter = ["bash", "-c"]
    command     = "rm -f \"$KV_SECRET_FILE\""
    environment = {
      KV_SECRET_FILE = self.triggers.file
    }
  }
}

resource "null_resource" "node" {
  for_each = local.nodes

  triggers = {
    id               = each.key
    url              = each.value.url
    host             = var.hosts[each.value.host].address
    user             = var.hosts[each.value.host].user
    private_key_file = pathexpand(var.hosts[each.value.host].private_key_file)
    ssh_port         = lookup(var.hosts[each.value.host], "ssh_port", "22")
    host_key         = lookup(var.hosts[each.value.host], "host_key", "")
    remote_dir       = local.remote_dir
    dir              = "${local.remote_dir}/node-${each.key}"
    run_sha256       = sha256(local.run_files[each.key])
    env_sha256       = sha256(local.env_file)
    binary_sha256    = local.binary_sha256
    secret           = null_resource.secret.id
  }

  connection {
    type        = "ssh"
    host        = self.triggers.host
    port        = tonumber(self.triggers.ssh_port)
    user        = self.triggers.user
    private_key = file(self.triggers.private_key_file)
    host_key    = self.triggers.host_key != "" ? self.triggers.host_key : null
    agent       = false
    timeout     = "30s"
  }

  provisioner "remote-exec" {
    inline = [
      "set -eu",
      "if [ -f '${self.triggers.dir}/node.sh' ]; then sh '${self.triggers.dir}/node.sh' stop '${self.triggers.dir}'; fi",
      "rm -rf '${self.triggers.dir}'",
      "mkdir -p '${self.triggers.remote_dir}'",
      "mkdir -m 0700 '${self.triggers.dir}'",
    ]
  }

  provisioner "file" {
    source      = var.kv_node_binary
    destination = "${self.triggers.dir}/kv-node"
  }

  provisioner "file" {
    source      = "${path.module}/scripts/node.sh"
    destination = "${self.triggers.dir}/node.sh"
  }

  provisioner "file" {
    content     = local.run_files[each.key]
    destination = "${self.triggers.dir}/run"
  }

  provisioner "file" {
    content     = local.env_file
    destination = "${self.triggers.dir}/env"
  }

  provisioner "file" {
    source      = null_resource.secret.triggers.file
    destination = "${self.triggers.dir}/cluster-secret"
  }

  provisioner "remote-exec" {
    inline = [
      "KV_START_TIMEOUT=${var.health_timeout_seconds} sh '${self.triggers.dir}/node.sh' start '${self.triggers.dir}'",
    ]
  }

  provisioner "remote-exec" {
    when = destroy
    inline = [
      "set -eu",
      "if [ -f '${self.triggers.dir}/node.sh' ]; then sh '${self.triggers.dir}/node.sh' stop '${self.triggers.dir}'; fi",
      "rm -rf '${self.triggers.dir}'",
      "rmdir '${self.triggers.remote_dir}' 2>/dev/null || true",
    ]
  }
}

resource "null_resource" "ready" {
  triggers = {
    nodes = join(" ", [for id in sort(keys(null_resource.node)) : null_resource.node[id].id])
  }

  provisioner "local-exec" {
    interpreter = ["bash"]
    command     = "${path.module}/scripts/wait-ready.sh"
    environment = {
      KV_URLS           = join(" ", [for n in var.nodes : n.url])
      KV_HEALTH_TIMEOUT = tostring(var.health_timeout_seconds)
    }
  }
}
