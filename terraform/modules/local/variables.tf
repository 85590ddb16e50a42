# The inputs every target module takes (see the root main.tf).

variable "nodes" {
  description = "The nodes to run, from modules/cluster: id, role, bind, port, url and args (kv-node flags)."
  type = list(object({
    id   = number
    role = string
    bind = string
    port = number
    url  = string
    args = list(string)
  }))
}

variable "kv_node_binary" {
  description = "Absolute path of the kv-node executable."
  type        = string
}

variable "run_dir" {
  description = "Absolute path of this deployment's directory for pid and log files (node-ID.pid, node-ID.log)."
  type        = string
}

variable "environment" {
  description = "Environment variables given to every node (e.g. ADMIN_TOKEN). The nodes get no other variables but PATH, HOME and NO_COLOR."
  type        = map(string)
  default     = {}
}

variable "health_timeout_seconds" {
  description = "How long the start waits for every node to answer /health."
  type        = number
  default     = 30
}
