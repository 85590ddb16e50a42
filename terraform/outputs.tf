output "mode" {
  description = "Replication mode of the deployment."
  value       = var.mode
}

output "quorums" {
  description = "N, W and R of the deployment."
  value       = { n = var.replicas, w = module.cluster.w, r = module.cluster.r }
}

output "leader_url" {
  description = "URL of node 1, which leads the first term (after a failover another node may lead: see any node's /status); null in leaderless mode, where every node coordinates writes."
  value       = module.cluster.leader_url
}

output "node_urls" {
  description = "URL of every node, in node id order (node 1 first)."
  value       = module.cluster.node_urls
}

output "dashboard_url" {
  description = "The dashboard, served by the leader (leaderless: by node 1)."
  value       = module.cluster.dashboard_url
}

output "try_curl" {
  description = "A write at the leader (leaderless: node 1) and a read at the last node."
  value       = module.cluster.try_curl
}

output "log_dir" {
  description = "Where the nodes' log and pid files are (target \"local\"; null for \"ssh\": see log_files)."
  value       = var.target == "local" ? module.local[0].run_dir : null
}

output "log_files" {
  description = "Each node's log, by node id: a path on this machine (target \"local\"), or USER@HOST:PATH (target \"ssh\"; a relative PATH is in the user's home)."
  value       = var.target == "local" ? module.local[0].log_files : module.ssh[0].log_files
}

output "admin_token" {
  description = "The nodes' admin token (`Authorization: Bearer ...`), empty when they have none; scripts/deploy.sh prints it with the dashboard URL."
  value       = var.admin_token
  sensitive   = true
}
