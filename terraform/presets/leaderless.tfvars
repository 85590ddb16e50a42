# Leaderless (Dynamo-style), N=5, W=N=5, R=1: any node coordinates a write and waits for every replica.
mode     = "leaderless"
replicas = 5
w        = 5
r        = 1
