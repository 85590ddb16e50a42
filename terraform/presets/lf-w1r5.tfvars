# Leader-follower, N=5, W=1, R=5: a write is acknowledged by the leader alone; a read consults every replica.
mode     = "leader-follower"
replicas = 5
w        = 1
r        = 5
