//! The dashboard's live feed: `GET /events`, Server-Sent Events.
//!
//! Every node serves the feed; the browser talks to that node only.
//!
//! - **Cluster snapshots.** While at least one client is subscribed, an
//!   aggregator task builds a [`ClusterView`](kv_shared::events::ClusterView) every [`AGGREGATE_EVERY`]: this
//!   node's own `/status` plus each peer's, fetched server-side with a short
//!   timeout (a peer that does not answer is shown down, with the reason).
//!   The task starts with the first subscriber and ends with the last, so an
//!   unwatched node does no extra work.
//! - **Write traces.** The replication runtime reports, through the
//!   [`EventHub`], when a write was accepted, when it was sent to each replica,
//!   when each acknowledgement came back and when the client was answered.
//!   The hub keeps a small book of the writes in flight and publishes a
//!   [`WriteTrace`](kv_shared::events::WriteTrace) each time one of its timestamps is filled in. All stamps
//!   are this node's wall clock (ms since the epoch), so the dashboard can
//!   replay them at the pace they happened.
//!
//! - **Read traces.** The read coordinator ([`crate::reads`]) reports each
//!   coordinated read once it ended, as a [`ReadTrace`](kv_shared::events::ReadTrace): the replicas asked,
//!   each one's answer, the version returned and the repairs sent. At most
//!   [`MAX_READS_PER_SECOND`] are published per second.
//! - **What a page sees first.** A new page gets the last snapshot only if it
//!   is fresh (built within [`FRESH_STATUS_MS`]): an older one would be drawn
//!   as history that this page never saw. Traces of writes that started before
//!   the stream opened (minus [`TRACE_GRACE_MS`]) are not sent to it either,
//!   so writes left in flight while nobody watched do not reappear half done.
//!   A write that ends without its quorum (503) is published once more with
//!   its [`TraceOutcome`](kv_shared::events::TraceOutcome) and forgotten. A new page does get the final copies
//!   of the last [`MAX_RECENT`] writes that ended (answered and acknowledged
//!   everywhere, or failed) within [`RECENT_MS`] while the node was watched,
//!   so that a 503 just before it opened shows as failed, not as waiting.
//!
//! - **Relay.** A write's trace is built by the node that coordinated it (the
//!   leader, or in leaderless mode any node). So that every node's page shows
//!   every write, the aggregator also follows each peer's
//!   `GET /events?only=own-traces` (that peer's own traces, no snapshots, no
//!   aggregator started there) and republishes them. Relayed traces are never
//!   relayed again, so there are no loops.
//!
//! Cost when nobody watches: every `trace_*` call returns after one atomic
//! load. When someone watches, at most [`MAX_TRACED`] writes are traced at a
//! time (later writes are skipped until some finish), so a load test does not
//! flood the browser.
//!
//! The hub also lets the server end every stream on shutdown ([`EventHub::close`]),
//! because a graceful shutdown waits for open responses and a stream never ends
//! by itself.

//!
//! # Layout
//! - `hub`: the [`EventHub`] — the book of traced writes, publishing and
//!   subscribing, the read-trace budget, the cached snapshot.
//! - `relay`: the aggregator task — snapshots every [`AGGREGATE_EVERY`]
//!   and the relays of the peers' own traces.
//! - `view`: the pure assembly of a [`kv_shared::events::ClusterView`] from
//!   this node's and its peers' `/status`.
//! - `sse`: the `GET /events` handler.

mod hub;
mod relay;
mod sse;
#[cfg(test)]
mod tests;
mod view;

pub use hub::EventHub;
pub use relay::build_view;
pub use sse::{events, EventsQuery, Only};
pub use view::assemble;

use kv_shared::events::WallMs;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Interval between two cluster snapshots while someone watches.
pub const AGGREGATE_EVERY: Duration = Duration::from_millis(300);
/// How long the aggregator waits for one peer's `/status`.
pub const PEER_STATUS_TIMEOUT: Duration = Duration::from_millis(450);
/// Most writes traced at once.
pub const MAX_TRACED: usize = 24;
/// Most updated traces published by one `trace_sent`/`trace_acked` call.
const MAX_PUBLISH_PER_CALL: usize = 8;
/// A write still incomplete after this long is forgotten (a replica is down).
const TRACE_TTL_MS: WallMs = 30_000;
/// Events buffered per subscriber before the slowest one skips some.
const CHANNEL_CAPACITY: usize = 256;
/// Streams served at once unless configured (`--max-event-streams`).
pub const DEFAULT_MAX_STREAMS: usize = 64;
/// Most read traces published per second (a load test reads a lot).
pub const MAX_READS_PER_SECOND: u32 = 20;
/// A cached snapshot older than this is not sent to a new page, in ms.
pub const FRESH_STATUS_MS: WallMs = 1_000;
/// Traces of writes started this long before a stream opened are still sent
/// to it (the coordinator's clock may be a little behind the server's), in ms.
pub const TRACE_GRACE_MS: WallMs = 1_000;
/// Ended write traces kept for new pages.
pub const MAX_RECENT: usize = 16;
/// How long an ended write trace is replayed to new pages, in ms.
pub const RECENT_MS: WallMs = 60_000;
/// Reconnection delay the browser is asked to use, in ms.
const CLIENT_RETRY: Duration = Duration::from_millis(1_000);
/// Wait before a relay reconnects to a peer's stream.
const RELAY_RETRY: Duration = Duration::from_millis(1_000);
/// How often a relay waiting for a peer's event checks whether it is still needed.
const RELAY_CHECK: Duration = Duration::from_millis(500);

/// This node's wall clock in ms since the Unix epoch.
pub fn wall_ms() -> WallMs {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
