# The cluster plan: which nodes exist, their roles, ports and URLs, and the exact kv-node flags
# of each (the flag contract of kv-node). No resources: every target module runs these nodes.

locals {
  leader_follower = var.mode == "leader-follower"
  majority        = floor(var.replicas / 2) + 1
  w               = var.w != null ? var.w : (local.leader_follower ? local.majority : var.replicas)
  r               = var.r != null ? var.r : (local.leader_follower ? local.majority : 1)

  # Terraform 1.0 cannot validate one variable against another, so a bad combination fails the
  # plan here; the message is in the error ("cannot convert ... to bool").
  checked = alltrue([
    can(regex("^[0-9]+$", tostring(local.w))) && local.w >= 1 && local.w <= var.replicas ? true : tobool("w=${local.w} must be a whole number between 1 and replicas=${var.replicas}"),
    can(regex("^[0-9]+$", tostring(local.r))) && local.r >= 1 && local.r <= var.replicas ? true : tobool("r=${local.r} must be a whole number between 1 and replicas=${var.replicas}"),
    length(var.hosts) > 0 ? true : tobool("hosts must not be empty (target \"ssh\" needs at least one host)"),
    var.base_port + local.nodes_per_host - 1 <= 65535 ? true : tobool("base_port=${var.base_port} leaves no room for ${local.nodes_per_host} ports"),
  ])

  # Nodes are dealt to the hosts in turn; the k-th node of a host listens on base_port + k - 1
  # (one host, as on this machine: node i on base_port + i - 1).
  nodes_per_host = ceil(var.replicas / max(length(var.hosts), 1))

  # IPv6 literals need brackets in URLs.
  url_hosts = [for h in var.hosts : length(regexall(":", h)) > 0 ? "[${h}]" : h]

  endpoints = [for i in range(var.replicas) : {
    id   = i + 1
    role = local.leader_follower ? (i == 0 ? "leader" : "follower") : "peer"
    host = i % length(var.hosts)
    bind = var.bind_address != null ? var.bind_address : var.hosts[i % length(var.hosts)]
    port = var.base_port + floor(i / length(var.hosts))
    url  = "http://${local.url_hosts[i % length(local.url_hosts)]}:${var.base_port + floor(i / length(var.hosts))}"
  } if local.checked]

  peers = join(",", [for e in local.endpoints : "${e.id}=${e.url}"])

  nodes = [for e in local.endpoints : merge(e, {
    args = concat(
      [
        "--mode", var.mode,
        "--node-id", tostring(e.id),
        "--bind", e.bind,
        "--port", tostring(e.port),
        "--advertise-url", e.url,
        "--peers", local.peers,
        "--w", tostring(local.w),
        "--r", tostring(local.r),
        "--delay-profile", var.delay_profile,
      ],
      local.leader_follower ? ["--role", e.role] : [],
      var.extra_args,
    )
  }) if local.checked]

  entry_url = local.endpoints[0].url
  last_url  = local.endpoints[var.replicas - 1].url
}
