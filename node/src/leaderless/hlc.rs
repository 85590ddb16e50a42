//! Hybrid logical clock: the versions of leaderless writes.
//!
//! A version must order every write of the cluster totally (two coordinators
//! never issue the same version), follow real time closely enough that "last
//! write wins" means what a user expects, and still grow when a node's wall
//! clock jumps backwards. A hybrid logical clock (Kulkarni et al., 2014) does
//! that: it reads the wall clock, never goes below the highest reading it has
//! issued or seen, and counts up a logical part when the wall clock has not
//! moved past that reading. The coordinator's node id breaks ties between
//! nodes.
//!
//! # Bit layout of a [`Version`] (one `u64`, compared as an integer)
//!
//! ```text
//!  63                      22 21           8 7        0
//! +--------------------------+--------------+----------+
//! |  physical: 42 bits       | logical: 14  | node: 8  |
//! |  ms since 2024-01-01 UTC | counter      | id       |
//! +--------------------------+--------------+----------+
//! ```
//!
//! Limits, chosen deliberately:
//! - **Physical, 42 bits of milliseconds** from [`EPOCH_UNIX_MS`]
//!   (2024-01-01T00:00:00Z): 2^42 ms ≈ 139 years, until about 2163. A wall
//!   clock set before 2024 reads as 0 (the clock then runs on its logical
//!   part); one past 2163 saturates.
//! - **Logical, 14 bits**: 16 384 versions per millisecond per node. When a
//!   node issues more within one millisecond, the clock borrows the next
//!   millisecond (it runs slightly ahead of the wall clock until real time
//!   catches up), so versions never repeat — 16 million writes per second per
//!   node before the clock drifts ahead at all.
//! - **Node id, 8 bits**: leaderless nodes must have ids 0..=255
//!   ([`Hlc::new`] refuses others). Two coordinators that issue a version in
//!   the same millisecond with the same counter differ in this field, so the
//!   order is total.
//! - Versions exceed 2^53: JavaScript's `JSON.parse` rounds them. The
//!   dashboard (Rust/WASM), the load tester and `jq` 1.7+ read them exactly.
//!
//! Leaderless versions are therefore large integers (≈ 2^60 today), unlike
//! the 1, 2, 3… of standalone and leader-follower modes; they still grow with
//! every write of a key.

use kv_shared::{NodeId, Version};

pub use kv_shared::leaderless::hlc::{
    EPOCH_UNIX_MS, LOGICAL_BITS, MAX_LOGICAL, MAX_NODE_ID, MAX_PHYSICAL, NODE_BITS, PHYSICAL_BITS,
};

/// A version split into its three fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp {
    /// Milliseconds since [`EPOCH_UNIX_MS`].
    pub physical: u64,
    /// Counter within the millisecond.
    pub logical: u64,
    /// The issuing node.
    pub node: u64,
}

impl Stamp {
    /// Packs the fields into a version (each field is masked to its width).
    pub fn pack(self) -> Version {
        ((self.physical & MAX_PHYSICAL) << (LOGICAL_BITS + NODE_BITS))
            | ((self.logical & MAX_LOGICAL) << NODE_BITS)
            | (self.node & u64::from(MAX_NODE_ID))
    }

    /// Splits a version into its fields.
    pub fn unpack(v: Version) -> Self {
        Self {
            physical: v >> (LOGICAL_BITS + NODE_BITS),
            logical: (v >> NODE_BITS) & MAX_LOGICAL,
            node: v & u64::from(MAX_NODE_ID),
        }
    }

    /// The physical part as milliseconds since the Unix epoch.
    pub fn unix_ms(self) -> u64 {
        self.physical + EPOCH_UNIX_MS
    }
}

/// The clock of one node. Not thread-safe by itself: the leaderless core
/// owns it behind its lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hlc {
    node: u64,
    /// Highest (physical, logical) issued or observed.
    physical: u64,
    logical: u64,
}

/// A node id that does not fit the node field of a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "leaderless node ids must be at most {MAX_NODE_ID} (they are part of every version); got {0}"
)]
pub struct NodeIdTooLarge(pub NodeId);

impl Hlc {
    /// A clock for node `node`, starting at zero (the first reading jumps to
    /// the wall clock).
    ///
    /// # Errors
    /// When `node` does not fit the 8-bit node field.
    pub fn new(node: NodeId) -> Result<Self, NodeIdTooLarge> {
        if node > MAX_NODE_ID {
            return Err(NodeIdTooLarge(node));
        }
        Ok(Self {
            node: u64::from(node),
            physical: 0,
            logical: 0,
        })
    }

    /// A version greater than every version this clock has issued or
    /// observed, and not below the wall clock `wall_unix_ms`.
    pub fn now(&mut self, wall_unix_ms: u64) -> Version {
        let wall = wall_unix_ms.saturating_sub(EPOCH_UNIX_MS).min(MAX_PHYSICAL);
        if wall > self.physical {
            self.physical = wall;
            self.logical = 0;
        } else if self.logical < MAX_LOGICAL {
            self.logical += 1;
        } else if self.physical < MAX_PHYSICAL {
            // 16 384 versions in one millisecond: borrow the next one.
            self.physical += 1;
            self.logical = 0;
        }
        // (Both parts at their maximum, in 2163: the clock stops growing; the
        // node id still distinguishes coordinators.)
        self.reading()
    }

    /// A version greater than `floor` (the coordinator's copy of the key),
    /// than anything issued or observed before, and not below the wall clock.
    /// This is what makes versions grow per key even when this node's wall
    /// clock lags the node that wrote `floor`.
    pub fn stamp_after(&mut self, floor: Version, wall_unix_ms: u64) -> Version {
        self.observe(floor);
        self.now(wall_unix_ms)
    }

    /// Takes note of a version seen in a message: later readings are greater.
    pub fn observe(&mut self, seen: Version) {
        let s = Stamp::unpack(seen);
        if (s.physical, s.logical) > (self.physical, self.logical) {
            self.physical = s.physical;
            self.logical = s.logical;
        }
    }

    /// The highest version issued or observed, stamped with this node's id
    /// (does not advance the clock).
    pub fn reading(&self) -> Version {
        Stamp {
            physical: self.physical,
            logical: self.logical,
            node: self.node,
        }
        .pack()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = EPOCH_UNIX_MS + 1_000_000;

    #[test]
    fn fields_round_trip_and_order_as_integers() {
        let s = Stamp {
            physical: 123_456,
            logical: 7,
            node: 5,
        };
        assert_eq!(Stamp::unpack(s.pack()), s);
        let later_ms = Stamp {
            physical: 123_457,
            logical: 0,
            node: 0,
        };
        let more_logical = Stamp {
            logical: 8,
            node: 0,
            ..s
        };
        let higher_node = Stamp { node: 6, ..s };
        for bigger in [later_ms, more_logical, higher_node] {
            assert!(bigger.pack() > s.pack(), "{bigger:?}");
        }
        assert_eq!(PHYSICAL_BITS, 42);
    }

    #[test]
    fn readings_stay_monotonic_when_the_wall_clock_goes_backwards() {
        let mut c = Hlc::new(3).unwrap();
        let a = c.now(T0);
        let b = c.now(T0 - 5_000); // the wall clock jumped 5 s back
        let d = c.now(T0 - 4_000);
        let e = c.now(T0 + 1);
        assert!(a < b && b < d && d < e, "{a} {b} {d} {e}");
        assert_eq!(Stamp::unpack(b).physical, Stamp::unpack(a).physical);
        assert_eq!(Stamp::unpack(e).unix_ms(), T0 + 1);
        assert_eq!(Stamp::unpack(e).node, 3);
    }

    #[test]
    fn logical_overflow_borrows_the_next_millisecond() {
        let mut c = Hlc::new(1).unwrap();
        let mut last = c.now(T0);
        for _ in 0..(MAX_LOGICAL + 10) {
            let v = c.now(T0);
            assert!(v > last);
            last = v;
        }
        assert_eq!(Stamp::unpack(last).unix_ms(), T0 + 1);
    }

    #[test]
    fn a_lagging_clock_still_stamps_above_what_it_saw() {
        let mut fast = Hlc::new(1).unwrap();
        let mut slow = Hlc::new(2).unwrap();
        let from_fast = fast.now(T0 + 60_000);
        let v = slow.stamp_after(from_fast, T0);
        assert!(v > from_fast);
        slow.observe(fast.now(T0 + 60_001));
        assert!(slow.now(T0) > from_fast);
    }

    #[test]
    fn same_instant_on_two_nodes_orders_by_node_id() {
        let mut a = Hlc::new(1).unwrap();
        let mut b = Hlc::new(2).unwrap();
        assert!(a.now(T0) < b.now(T0));
    }

    #[test]
    fn node_ids_beyond_eight_bits_are_refused() {
        assert!(Hlc::new(255).is_ok());
        assert!(Hlc::new(256).unwrap_err().to_string().contains("255"));
    }

    #[test]
    fn wall_clock_before_the_epoch_reads_as_zero() {
        let mut c = Hlc::new(1).unwrap();
        let a = c.now(1_000);
        assert_eq!(Stamp::unpack(a).physical, 0);
        assert!(c.now(1_000) > a);
    }
}
