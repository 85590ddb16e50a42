output "run_dir" {
  description = "The directory of the nodes' pid and log files."
  value       = null_resource.cluster.triggers.run_dir
}

output "log_files" {
  description = "Log file of every node, by node id."
  value       = { for n in var.nodes : tostring(n.id) => "${var.run_dir}/node-${n.id}.log" }
}
