//! `GET /metrics`: the node in the Prometheus text format (OpenMetrics),
//! built with `prometheus-client`.
//!
//! Two kinds of figures:
//! - **Requests**, counted as they are answered by a middleware on the
//!   client and node-to-node routes: `kv_http_requests_total{route, method,
//!   status}` and the latency histogram `kv_http_request_duration_seconds{route}`
//!   (route = the router's pattern, e.g. `/get/{key}`, so keys never become
//!   labels). Quorum failures are the 503s of `/set` and `/get`.
//! - **State**, read from the same snapshot `/status` serves at every scrape
//!   (nothing else to keep in sync): keys, role, term and elections,
//!   commit and applied positions, rolled-back writes, replication lag per
//!   peer (entries and ms), peers up, hints queued per peer and delivered,
//!   anti-entropy rounds and keys repaired, clock skew, faults injected and
//!   active, refused connections and messages.
//!
//! Like `/status`, `/metrics` is read-only and needs no token.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use kv_shared::cluster::StatusResponse;
use kv_shared::Role;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::time::{Duration, Instant};

/// Middleware (a route layer, so the route pattern is known): counts and
/// times every answered request.
pub async fn count_request(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let resp = next.run(req).await;
    metrics.observe(&route, &method, resp.status().as_u16(), started.elapsed());
    resp
}

/// Labels of a request counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

/// Labels of a latency histogram.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

/// Labels of a per-peer figure.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: String,
}

fn new_latency_histogram() -> Histogram {
    // 100 µs to ~6.5 s, doubling.
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

/// The request metrics of one node (cheap to clone: shared families).
#[derive(Clone)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(new_latency_histogram),
        }
    }
}

impl Metrics {
    /// Counts one answered request of `route` (the router's pattern).
    pub fn observe(&self, route: &str, method: &str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// The text exposition: the request metrics and the figures of `status`.
    pub fn render(&self, status: &StatusResponse) -> String {
        let mut r = Registry::with_prefix("kv");
        r.register(
            "http_requests",
            "Requests answered, by route pattern, method and status",
            self.requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "Time to answer a request, by route pattern",
            self.latency.clone(),
        );
        let gauge = |r: &mut Registry, name: &str, help: &str, v: i64| {
            let g = Gauge::<i64>::default();
            g.set(v);
            r.register(name, help, g);
        };
        let counter = |r: &mut Registry, name: &str, help: &str, v: u64| {
            let c = Counter::<u64>::default();
            c.inc_by(v);
            r.register(name, help, c);
        };
        let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        gauge(&mut r, "keys", "Keys in the local store", int(status.keys));
        gauge(
            &mut r,
            "is_leader",
            "1 while this node leads (leader-follower)",
            i64::from(status.role == Role::Leader),
        );
        gauge(
            &mut r,
            "applied_seq",
            "Highest log position applied here",
            int(status.applied_seq),
        );
        gauge(
            &mut r,
            "write_quorum",
            "W in force",
            i64::from(status.config.w),
        );
        gauge(
            &mut r,
            "read_quorum",
            "R in force",
            i64::from(status.config.r),
        );
        let up = status.peers.iter().filter(|p| p.up).count() as i64;
        gauge(&mut r, "peers_up", "Peers that answered lately", up);
        let per_peer =
            |r: &mut Registry,
             name: &str,
             help: &str,
             get: &dyn Fn(&kv_shared::cluster::PeerStatus) -> Option<u64>| {
                let family = Family::<PeerLabels, Gauge>::default();
                for p in &status.peers {
                    if let Some(v) = get(p) {
                        family
                            .get_or_create(&PeerLabels {
                                peer: p.id.to_string(),
                            })
                            .set(int(v));
                    }
                }
                r.register(name, help, family);
            };
        per_peer(
            &mut r,
            "replication_lag_entries",
            "Log entries a follower has not acknowledged (at the leader)",
            &|p| p.progress.lag_entries,
        );
        per_peer(
            &mut r,
            "replication_lag_ms",
            "Age of the oldest entry a follower has not acknowledged, ms (at the leader)",
            &|p| p.progress.lag_ms,
        );
        per_peer(
            &mut r,
            "hints_queued",
            "Hints queued for a peer (leaderless)",
            &|p| p.progress.pending_hints,
        );
        if let Some(lf) = &status.leader_follower {
            gauge(&mut r, "term", "Current term", int(lf.term));
            gauge(
                &mut r,
                "commit_seq",
                "Highest committed log position",
                int(lf.commit_seq),
            );
            counter(
                &mut r,
                "elections",
                "Elections this node started",
                lf.elections,
            );
            counter(
                &mut r,
                "rolled_back_writes",
                "Writes undone because the elected leader did not hold them",
                lf.rolled_back,
            );
            counter(
                &mut r,
                "rolled_back_acknowledged_writes",
                "Rolled-back writes this node had acknowledged to a client",
                lf.rolled_back_acknowledged,
            );
        }
        if let Some(ll) = &status.leaderless {
            counter(
                &mut r,
                "hints_delivered",
                "Hints handed off to their peer",
                ll.delivered_hints,
            );
            counter(
                &mut r,
                "hints_dropped",
                "Hints dropped (queue full)",
                ll.dropped_hints,
            );
            counter(
                &mut r,
                "replica_writes_failed",
                "Writes a peer did not take",
                ll.writes_failed,
            );
            counter(
                &mut r,
                "anti_entropy_rounds",
                "Anti-entropy rounds run",
                ll.anti_entropy_rounds,
            );
            counter(
                &mut r,
                "anti_entropy_keys_repaired",
                "Keys repaired by anti-entropy",
                ll.anti_entropy_keys_repaired,
            );
        }
        if let Some(f) = &status.faults {
            counter(
                &mut r,
                "faults_injected",
                "Faults injected through /admin/faults",
                f.injected,
            );
            gauge(
                &mut r,
                "faults_active",
                "Faults in force now",
                f.active.len() as i64,
            );
        }
        if let Some(s) = &status.security {
            gauge(
                &mut r,
                "open_connections",
                "Connections open now",
                int(s.open_connections),
            );
            counter(
                &mut r,
                "refused_connections",
                "Connections closed at once (--max-connections)",
                s.refused_connections,
            );
            counter(
                &mut r,
                "unauthenticated_requests",
                "Node-to-node requests without the cluster secret",
                s.unauthenticated,
            );
            counter(
                &mut r,
                "invalid_messages",
                "Signed node-to-node messages refused by validation",
                s.invalid_messages,
            );
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &r);
        out
    }
}
