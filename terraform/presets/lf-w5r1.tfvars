# Leader-follower, N=5, W=5, R=1: a write waits for every replica; any single replica can answer a read.
mode     = "leader-follower"
replicas = 5
w        = 5
r        = 1
