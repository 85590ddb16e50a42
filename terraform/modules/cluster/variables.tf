variable "mode" {
  description = "\"leader-follower\" or \"leaderless\"."
  type        = string
}

variable "replicas" {
  description = "Number of replicas N; node ids are 1..N."
  type        = number
}

variable "w" {
  description = "Write quorum; null for the mode's default."
  type        = number
  default     = null
}

variable "r" {
  description = "Read quorum; null for the mode's default."
  type        = number
  default     = null
}

variable "base_port" {
  description = "Port of node 1; node i listens on base_port + i - 1."
  type        = number
}

variable "bind_address" {
  description = "Address every node binds; null: the address of the node's own host (hosts[...], which must then be IP addresses)."
  type        = string
  default     = null
}

variable "hosts" {
  description = "Hosts in the nodes' URLs: node i runs on, and is reached at, hosts[(i - 1) % length(hosts)]."
  type        = list(string)
}

variable "delay_profile" {
  description = "\"off\" or \"assignment\"."
  type        = string
  default     = "off"
}

variable "extra_args" {
  description = "Flags appended to every node's generated flags."
  type        = list(string)
  default     = []
}
