output "log_files" {
  description = "Where each node logs, by node id: USER@HOST:PATH (a relative PATH is in the user's home)."
  value = { for id, n in local.nodes : id =>
    "${var.hosts[n.host].user}@${var.hosts[n.host].address}:${local.remote_dir}/node-${id}/kv-node.log"
  }
}
