//! Faults injected into this node's own transport: messages to or from
//! chosen peers are cut, one way or both.
//!
//! The cut is done where the node sends and receives, not in the kernel, so
//! it works for nodes that share one loopback address: a call to a peer the
//! node is cut off from fails at once as if the peer were unreachable, and a
//! node-to-node request from such a peer (it names itself in the
//! [`FROM_HEADER`]) is refused as if it never arrived.

use kv_shared::NodeId;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// Header every node-to-node request carries: the sending node's id.
pub use kv_shared::replication::FROM_HEADER;

#[derive(Debug, Default)]
struct Cuts {
    to: BTreeSet<NodeId>,
    from: BTreeSet<NodeId>,
}

/// The faults in force on this node: a cheap, cloneable handle.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Locked to read or change a set; never held across `.await`.
    cuts: Arc<Mutex<Cuts>>,
}

impl Faults {
    fn lock(&self) -> std::sync::MutexGuard<'_, Cuts> {
        self.cuts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Cuts messages from this node to `peers` (`outgoing`) and from `peers`
    /// to this node (`incoming`).
    pub fn cut(&self, peers: &[NodeId], outgoing: bool, incoming: bool) {
        let mut c = self.lock();
        for &p in peers {
            if outgoing {
                c.to.insert(p);
            }
            if incoming {
                c.from.insert(p);
            }
        }
    }

    /// Removes every cut.
    pub fn heal(&self) {
        let mut c = self.lock();
        c.to.clear();
        c.from.clear();
    }

    /// Whether messages to `peer` are cut.
    pub fn cuts_to(&self, peer: NodeId) -> bool {
        self.lock().to.contains(&peer)
    }

    /// Whether messages from `peer` are cut.
    pub fn cuts_from(&self, peer: NodeId) -> bool {
        self.lock().from.contains(&peer)
    }

    /// The peers cut in each direction: (outgoing, incoming).
    pub fn cuts(&self) -> (Vec<NodeId>, Vec<NodeId>) {
        let c = self.lock();
        (
            c.to.iter().copied().collect(),
            c.from.iter().copied().collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_are_one_way_or_both_and_heal_clears_them() {
        let f = Faults::default();
        f.cut(&[2], true, false);
        f.cut(&[3], true, true);
        assert!(f.cuts_to(2) && !f.cuts_from(2));
        assert!(f.cuts_to(3) && f.cuts_from(3));
        assert_eq!(f.cuts(), (vec![2, 3], vec![3]));
        f.heal();
        assert!(!f.cuts_to(3) && !f.cuts_from(3));
    }
}
