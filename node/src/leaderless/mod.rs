//! Leaderless (Dynamo-style) replication: any node coordinates, tunable W
//! and R, last-write-wins by hybrid-logical-clock versions, read repair,
//! hinted handoff and Merkle-tree anti-entropy.
//!
//! # Guarantees
//! - **Every node holds every key** (N = the number of nodes; there is no
//!   ring and no preference list). Any node accepts `POST /set` and becomes
//!   that write's coordinator.
//! - **Versions order writes totally.** The coordinator stamps each write
//!   with a version from its hybrid logical clock ([`hlc`]): physical ms,
//!   logical counter and node id packed into one `u64`. Two coordinators
//!   never issue the same version, and a coordinator always stamps above its
//!   own copy of the key, so versions grow per key.
//! - **Last write wins, replicas converge.** A replica keeps the record with
//!   the highest version (`Store::apply`). Concurrent writes of one key
//!   through different coordinators end with the same value — the one with
//!   the highest version — on every replica, whatever order the messages
//!   arrive in. The loser is silently overwritten (no siblings).
//! - **201 means W replicas hold the write** (the coordinator included). With
//!   R + W > N a `GET` that starts after the 201 consults at least one of
//!   those W replicas and returns the write or a newer one.
//! - **A replica that was down does not lose writes**: the coordinator keeps a
//!   hint ([`hints`]) and hands it over when the replica answers again;
//!   anything hints miss (hint store full, coordinator restarted) is found by
//!   anti-entropy ([`merkle`]), which also refills a replica that restarts
//!   empty.
//!
//! # Message flow
//! ```text
//! client ──POST /set──▶ coordinator C
//!   C: version = hlc.stamp_after(local copy); apply locally     (ack 1 of W)
//!   C ──LlWrite──▶ every other replica, in parallel: over the writes
//!        stream kept open to it (/internal/ll/write/stream), one batch of
//!        the writes queued for it at a time, or POST /internal/ll/write
//!        replica: apply if newer, observe C's clock, ack         (ack 2.. of W)
//!   C ◀── W acks: 201 {key, value, version, status}
//!   C: a failed send → hint for that replica; W unreachable or the write
//!      timeout passes → 503 {"error","acked","required"}
//!
//! client ──GET /get──▶ node X: read itself and R-1 peers' versions
//!   (batched over a reads stream, /internal/reads/stream, or GET
//!   /internal/read?digest=true each), fetch the value from a peer only
//!   when its version is newer than X's copy, answer the highest version,
//!   push it to replicas that answered older (POST /internal/repair) — the
//!   shared coordinated read of `crate::reads`.
//!
//! every anti-entropy period (jittered), node X with one random peer P:
//!   X ──digest(level 0: root)──▶ P; descend only into differing children
//!   X ──keys(differing leaf buckets)──▶ P: (key, version) lists
//!   X ──fetch(keys P has newer)──▶ P;  X ──write(keys X has newer)──▶ P
//! ```
//!
//! # Quorum arithmetic
//! N nodes, W acknowledgements per write, R replicas per read.
//! - R + W > N: every read quorum meets every write quorum, so a read started
//!   after a write's 201 sees it (the highest version among R answers wins).
//!   The default W = N, R = 1 is such a setting: writes are slow and fail
//!   when any node is down; reads are local and fast.
//! - R + W ≤ N (e.g. W = 1, R = 1): stale reads are possible until
//!   replication, hints or anti-entropy catch up — eventual consistency.
//! - W and R change at run time (`POST /config`, cluster-wide); a write uses
//!   the W in force when it starts.
//!
//! # Timeouts, crash and restart
//! - A write waits at most `--write-timeout-ms` for W acknowledgements; it
//!   fails earlier once every replica it was sent to has answered (replicas
//!   believed down are not sent to) without W acknowledgements. A 503
//!   does not undo anything: the write stays on the replicas that took it and
//!   in hints for the others, so it may still become visible — like a
//!   Cassandra write timeout, the outcome is unknown to the client.
//! - A replica that does not answer is believed down: later writes hint it
//!   directly instead of sending, and every `hint_retry` the coordinator
//!   probes it with a batch of hints; the first success marks it up.
//! - A restarted node starts empty (the store is in memory) with its clock
//!   at the wall clock; hints addressed to it are delivered, and
//!   anti-entropy pulls everything else from its peers. Until then it may
//!   answer R = 1 reads with 404 or old values. Hints it held for others are
//!   lost; anti-entropy repairs those keys.
//!
//! # Delay profile
//! The switch shared with leader-follower (`--delay-profile assignment`):
//! the coordinator holds the shared send pacer 200 ms after each replication
//! message, a replica waits 100 ms after receiving a client write before it
//! applies and acknowledges it, and 50 ms before answering a read another
//! node coordinates. Hints and anti-entropy traffic are not delayed. All
//! waits are `tokio::time::sleep`s.
//!
//! # Layout
//! - [`hlc`]: the hybrid logical clock and the bit layout of a version.
//! - [`coordinator`]: the write coordinator as a state machine (W acks,
//!   timeouts, hints, hint delivery); no sockets.
//! - [`hints`]: the bounded per-peer hint store.
//! - [`merkle`]: the digest tree, its descent and the key-level reconcile.
//! - [`anti_entropy`]: the rounds (driver and the answering side).
//! - [`runtime`]: [`Leaderless`], which carries the coordinator's messages
//!   over the shared transport and pacer, and its background tasks.
//! - [`endpoints`]: the thin handlers of `/internal/ll/...`.
//!
//! # Implementation caveats
//! - No consistent-hashing ring, no sloppy quorum: every node replicates
//!   every key, and a write to a cluster with a node down meets W = N only
//!   through hints later (it answers 503 first).
//! - Last-write-wins with physical time: of two writes less than a clock skew
//!   apart, the one from the node whose clock runs ahead wins, even if it
//!   happened first in real time. No vector clocks or siblings.
//! - A clock reading or version more than `--max-clock-offset-ms` (500 ms)
//!   ahead of the receiver's wall clock is refused (like CockroachDB's
//!   maximum clock offset): a node whose clock runs further ahead cannot
//!   drag the others along, but its peers refuse its writes (so they meet
//!   no W above 1) until its clock is fixed.
//! - No deletes, so no tombstones.
//! - Hints live in memory and are bounded per peer; dropped hints are counted
//!   in `/status` and left to anti-entropy.
//! - The Merkle tree is rebuilt from the store at every round (O(keys): a
//!   round between two equal 100k-key stores took 58 ms, two tree builds
//!   and one request, see `docs/results.md`) rather than maintained incrementally; a write during a
//!   round may show up as a difference that the next round resolves.
//! - The `status` of a `/set` answer (`created`/`updated`) is decided from
//!   the coordinator's own copy of the key: a key created elsewhere and not
//!   yet replicated here reads as `created`.

pub mod anti_entropy;
pub mod coordinator;
pub mod endpoints;
pub mod hints;
pub mod hlc;
pub mod merkle;
pub mod runtime;

pub use runtime::Leaderless;
