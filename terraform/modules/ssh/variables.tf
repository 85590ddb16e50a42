# The inputs every target module takes (see the root main.tf), plus the hosts and where on
# them the nodes' files go.

variable "nodes" {
  description = "The nodes to run, from modules/cluster: id, role, host (index in hosts), bind, port, url and args (kv-node flags)."
  type = list(object({
    id   = number
    role = string
    host = number
    bind = string
    port = number
    url  = string
    args = list(string)
  }))
}

variable "hosts" {
  description = "The machines: address, user, private_key_file, and optionally ssh_port and host_key (see the root variables.tf)."
  type        = list(map(string))
}

variable "kv_node_binary" {
  description = "Absolute path of the kv-node executable to copy to every host (a static build runs on any Linux x86_64 host)."
  type        = string
}

variable "run_dir" {
  description = "Absolute path of this deployment's directory on this machine: the cluster secret (cluster-secret, mode 0600) is kept there."
  type        = string
}

variable "remote_dir" {
  description = "Directory on every host for the nodes' files (node-ID/); relative: from the SSH user's home."
  type        = string
}

variable "environment" {
  description = "Environment variables given to every node (ADMIN_TOKEN, CLUSTER_SECRET or CLUSTER_SECRET_FILE); they reach the hosts in a file of mode 0600, never on a command line."
  type        = map(string)
  default     = {}
}

variable "health_timeout_seconds" {
  description = "How long a start waits for its node to listen, and then for every node to answer /health ready."
  type        = number
  default     = 30
}
