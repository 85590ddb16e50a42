output "nodes" {
  description = "Every node: id, role (leader, follower or peer), host (its index in hosts), bind, port, url and args (its kv-node flags)."
  value       = local.nodes
}

output "w" {
  description = "The write quorum in force (the mode's default when none was given)."
  value       = local.w
}

output "r" {
  description = "The read quorum in force (the mode's default when none was given)."
  value       = local.r
}

output "leader_url" {
  description = "URL of node 1, the first term's leader; null in leaderless mode."
  value       = local.leader_follower ? local.entry_url : null
}

output "node_urls" {
  description = "URL of every node in id order."
  value       = [for e in local.endpoints : e.url]
}

output "dashboard_url" {
  description = "The dashboard page, on the leader (leaderless: node 1)."
  value       = "${local.entry_url}/"
}

output "try_curl" {
  description = "Two curl lines: a write at the leader (leaderless: node 1), a read at the last node."
  value = join("\n", [
    "curl -X POST ${local.entry_url}/set -H 'Content-Type: application/json' -d '{\"key\":\"hello\",\"value\":\"world\"}'",
    "curl '${local.last_url}/get?key=hello'",
  ])
}
