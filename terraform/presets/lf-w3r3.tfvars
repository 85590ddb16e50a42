# Leader-follower, N=5, W=3, R=3: majority quorums (R + W > N), the default deployment.
mode     = "leader-follower"
replicas = 5
w        = 3
r        = 3
