variable "target" {
  description = "Where the replicas run. \"local\": kv-node processes on this machine (modules/local). \"ssh\": on the machines listed in hosts, over SSH (modules/ssh)."
  type        = string
  default     = "local"

  validation {
    condition     = contains(["local", "ssh"], var.target)
    error_message = "The target must be \"local\" or \"ssh\"."
  }
}

variable "hosts" {
  description = "Target \"ssh\": the machines to run the nodes on, in order; node i runs on hosts[(i - 1) % length(hosts)]. Each is a map: address (IP address or name; used for SSH, in the node URLs and, unless bind_address is set, as the address the node binds), user (SSH user), private_key_file (path of the SSH private key; ~ allowed), and optionally ssh_port (default 22) and host_key (the host's public key, \"ssh-ed25519 AAAA...\", checked when given)."
  type        = list(map(string))
  default     = []

  validation {
    condition = alltrue([for h in var.hosts : alltrue([
      for k in keys(h) : contains(["address", "user", "private_key_file", "ssh_port", "host_key"], k)
      ]) && lookup(h, "address", "") != "" && lookup(h, "user", "") != "" && lookup(h, "private_key_file", "") != ""
      && can(regex("^[0-9]+$", lookup(h, "ssh_port", "22")))
    ])
    error_message = "Every host needs address, user and private_key_file; the only other keys are ssh_port (a number) and host_key."
  }
}

variable "remote_dir" {
  description = "Target \"ssh\": directory on every host for the nodes' files (node-ID/: kv-node, its environment file, scripts, pid and log files), removed on destroy. Relative: from the SSH user's home."
  type        = string
  default     = "kv-store"

  validation {
    condition     = length(regexall("^[A-Za-z0-9._/-]+$", var.remote_dir)) > 0 && length(regexall("(^|/)\\.\\.(/|$)", var.remote_dir)) == 0 && !contains(["", ".", "./"], trimsuffix(var.remote_dir, "/"))
    error_message = "The remote directory may hold only letters, digits and . _ / -, no \"..\", and must not be / or the home directory itself."
  }
}

variable "mode" {
  description = "Replication mode: \"leader-follower\" (node 1 campaigns first; any node can lead after a failover) or \"leaderless\" (Dynamo-style)."
  type        = string
  default     = "leader-follower"

  validation {
    condition     = contains(["leader-follower", "leaderless"], var.mode)
    error_message = "The mode must be \"leader-follower\" or \"leaderless\"."
  }
}

variable "replicas" {
  description = "Number of replicas N. Node ids are 1..N."
  type        = number
  default     = 5

  validation {
    condition     = can(regex("^[0-9]+$", tostring(var.replicas))) && var.replicas >= 1 && var.replicas <= 64
    error_message = "The number of replicas must be a whole number between 1 and 64."
  }
}

variable "w" {
  description = "Write quorum W, 1..N. Null: the mode's default (leader-follower: majority; leaderless: N)."
  type        = number
  default     = null
}

variable "r" {
  description = "Read quorum R, 1..N. Null: the mode's default (leader-follower: majority; leaderless: 1)."
  type        = number
  default     = null
}

variable "base_port" {
  description = "TCP port of node 1; node i listens on base_port + i - 1."
  type        = number
  default     = 8080

  validation {
    condition     = can(regex("^[0-9]+$", tostring(var.base_port))) && var.base_port >= 1 && var.base_port <= 65535
    error_message = "The base port must be a whole number between 1 and 65535."
  }
}

variable "bind_address" {
  description = "Address the nodes bind. Null: 127.0.0.1 on this machine (target \"local\"), the host's address on each host (target \"ssh\"). 0.0.0.0 listens on every interface (e.g. a host reached through NAT)."
  type        = string
  default     = null
}

variable "advertise_host" {
  description = "Target \"local\": host name or address in the nodes' URLs (how peers and clients reach them). Null: bind_address, or 127.0.0.1 when binding every interface. (Target \"ssh\": each host's address.)"
  type        = string
  default     = null
}

variable "delay_profile" {
  description = "Artificial replication delays: \"off\" or \"assignment\" (200 ms per send, 100 ms before an ack, 50 ms before a remote read)."
  type        = string
  default     = "off"

  validation {
    condition     = contains(["off", "assignment"], var.delay_profile)
    error_message = "The delay profile must be \"off\" or \"assignment\"."
  }
}

variable "kv_node_binary" {
  description = "Path of the kv-node executable. Null: target/release/kv-node of the repository (target \"ssh\": the static target/x86_64-unknown-linux-musl/release/kv-node, which runs on any Linux x86_64 host)."
  type        = string
  default     = null
}

variable "log_dir" {
  description = "Directory for the nodes' log and pid files (target \"ssh\": for the cluster secret only, which is copied to every host); one directory per deployment. Null: .run/ beside this file."
  type        = string
  default     = null
}

variable "cluster_secret" {
  description = "Secret every node of the cluster shares for node-to-node requests. Empty: a new random one is generated for each start of the cluster (in log_dir/cluster-secret, readable by its owner only)."
  type        = string
  default     = ""
  sensitive   = true
  validation {
    condition     = var.cluster_secret == "" || length(var.cluster_secret) >= 16
    error_message = "The cluster secret must be at least 16 characters (or empty: generated)."
  }
}

variable "admin_token" {
  description = "Bearer token for the nodes' admin calls (W/R and delay-profile changes, fault injection). scripts/deploy.sh always sets one (generated once into .run/admin-token). Empty: nodes bound to loopback allow W/R changes and refuse the rest; nodes bound elsewhere refuse every admin call."
  type        = string
  default     = ""
  sensitive   = true
}

variable "extra_args" {
  description = "More kv-node flags, given to every node after the generated ones (e.g. [\"--log-level\", \"debug\"])."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.extra_args : length(regexall("[\t\n]", a)) == 0])
    error_message = "The extra arguments must not contain tabs or newlines."
  }
}

variable "health_timeout_seconds" {
  description = "How long apply waits for every node to answer /health before it fails."
  type        = number
  default     = 30
}
