//! Checks of what arrives from peers, before any of it reaches a store or a
//! state machine. The cluster secret says a message comes from a member;
//! these checks keep even a member's malformed or extreme message from
//! corrupting or freezing a node:
//!
//! - ids name members of the cluster;
//! - terms and configuration epochs stay below [`MAX_TERM`] (no arithmetic
//!   on them can overflow, and no message can freeze them at `u64::MAX`),
//!   and an epoch moves at most [`MAX_EPOCH_STEP`] past the receiver's;
//! - configurations have W and R in 1..=N and capped delays;
//! - keys and values respect the client limits, counter versions stay below
//!   [`MAX_VERSION`], and a leaderless version or clock reading is at most
//!   `--max-clock-offset-ms` ahead of the receiver's wall clock (like
//!   CockroachDB's maximum clock offset);
//! - log entries are consecutive and of the sender's term or older.
//!
//! A refused message answers 400 with the reason, is logged at WARN and
//! counted in `/status` (`security.invalid_messages`).

use crate::error::Invalid;
use crate::leaderless::hlc::Stamp;
use kv_shared::cluster::ClusterConfig;
use kv_shared::leader_follower::{
    AppendRequest, AppendResponse, Command, SnapshotRequest, VoteRequest, VoteResponse,
};
use kv_shared::limits::{validate_key, MAX_TERM, MAX_TERM_RUNS, MAX_VALUE_BYTES, MAX_VERSION};
use kv_shared::replication::{ConfigEnvelope, Record};
use kv_shared::{NodeId, Version};

/// Most a configuration epoch may move past the receiver's in one message.
pub const MAX_EPOCH_STEP: u64 = 1_000;

/// What the checks need to know of the receiving node.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// This node's id.
    pub me: NodeId,
    /// The other members, sorted.
    pub peers: &'a [NodeId],
    /// N.
    pub n: u32,
}

/// Runs `f` with the context of the node of `cluster` (the one way every
/// caller builds it).
pub fn with_context<T>(cluster: &crate::cluster::Cluster, f: impl FnOnce(&Context<'_>) -> T) -> T {
    let peers = cluster.peers().ids();
    f(&Context {
        me: cluster.node_id(),
        peers: &peers,
        n: cluster.config().n,
    })
}

fn bad(message: impl Into<String>) -> Invalid {
    Invalid(message.into())
}

impl Context<'_> {
    /// The id names another member.
    ///
    /// # Errors
    /// 400 naming the id.
    pub fn member(&self, id: NodeId) -> Result<(), Invalid> {
        if id != self.me && self.peers.binary_search(&id).is_ok() {
            Ok(())
        } else {
            Err(bad(format!(
                "node {id} is not another member of this cluster"
            )))
        }
    }

    /// A configuration that arrived over the network.
    ///
    /// # Errors
    /// 400 with what is wrong.
    pub fn config(&self, c: &ClusterConfig) -> Result<(), Invalid> {
        c.check(self.n).map_err(|e| bad(e.0))
    }
}

/// A term (or an epoch) below [`MAX_TERM`].
///
/// # Errors
/// 400.
pub fn term(what: &str, t: u64) -> Result<(), Invalid> {
    if t > MAX_TERM {
        return Err(bad(format!("{what} {t} is above the limit {MAX_TERM}")));
    }
    Ok(())
}

/// A counter version (standalone, leader-follower) below [`MAX_VERSION`].
///
/// # Errors
/// 400.
pub fn counter_version(v: Version) -> Result<(), Invalid> {
    if v > MAX_VERSION {
        return Err(bad(format!("version {v} is above the limit {MAX_VERSION}")));
    }
    Ok(())
}

/// A key and value within the client limits.
///
/// # Errors
/// 400.
pub fn key_value(key: &str, value: &str) -> Result<(), Invalid> {
    validate_key(key).map_err(|e| bad(e.to_string()))?;
    if value.len() > MAX_VALUE_BYTES as usize {
        return Err(bad(format!(
            "a value of {} bytes is over the limit of {MAX_VALUE_BYTES}",
            value.len()
        )));
    }
    Ok(())
}

/// A record of a counter-versioned store.
///
/// # Errors
/// 400.
pub fn counter_record(r: &Record) -> Result<(), Invalid> {
    key_value(&r.key, &r.value)?;
    counter_version(r.version)
}

/// A leaderless version (or clock reading) is at most `max_offset_ms` ahead
/// of `wall_ms` (the receiver's wall clock, ms since the Unix epoch).
///
/// # Errors
/// 400 saying how far ahead it is.
pub fn clock(what: &str, v: Version, wall_ms: u64, max_offset_ms: u64) -> Result<(), Invalid> {
    let at = Stamp::unpack(v).unix_ms();
    if at > wall_ms.saturating_add(max_offset_ms) {
        return Err(bad(format!(
            "{what} {v} is {} ms ahead of this node's clock (the limit is {max_offset_ms} ms, \
             --max-clock-offset-ms)",
            at - wall_ms
        )));
    }
    Ok(())
}

/// A configuration envelope of leaderless mode, against the receiver's epoch.
///
/// # Errors
/// 400.
pub fn envelope(
    ctx: &Context<'_>,
    env: &ConfigEnvelope,
    current_epoch: u64,
) -> Result<(), Invalid> {
    ctx.config(&env.config)?;
    term("configuration epoch", env.epoch)?;
    if env.epoch > current_epoch.saturating_add(MAX_EPOCH_STEP) {
        return Err(bad(format!(
            "configuration epoch {} jumps more than {MAX_EPOCH_STEP} past this node's {current_epoch}",
            env.epoch
        )));
    }
    if env.origin != 0 && env.origin != ctx.me && ctx.peers.binary_search(&env.origin).is_err() {
        return Err(bad(format!(
            "configuration origin {} is not a member",
            env.origin
        )));
    }
    Ok(())
}

/// A (pre-)vote request or probe.
///
/// # Errors
/// 400.
pub fn vote(ctx: &Context<'_>, req: &VoteRequest) -> Result<(), Invalid> {
    ctx.member(req.candidate)?;
    term("term", req.term)?;
    term("last term", req.last_term)
}

/// A peer's answer to a (pre-)vote request or probe.
///
/// # Errors
/// 400 (the answer is ignored).
pub fn vote_response(resp: &VoteResponse) -> Result<(), Invalid> {
    term("term", resp.term)?;
    term("request term", resp.request_term)?;
    term("last term", resp.last_term)
}

/// A peer's answer to an append or a snapshot chunk.
///
/// # Errors
/// 400 (the answer is ignored).
pub fn append_response(resp: &AppendResponse) -> Result<(), Invalid> {
    term("term", resp.term)
}

/// An append message: entries consecutive after `prev_index`, of the
/// sender's term or older, each one valid.
///
/// # Errors
/// 400.
pub fn append(ctx: &Context<'_>, req: &AppendRequest) -> Result<(), Invalid> {
    ctx.member(req.leader)?;
    term("term", req.term)?;
    if req.prev_term > req.term {
        return Err(bad("prev_term is newer than the message's term"));
    }
    ctx.config(&req.config)?;
    let mut expect = req
        .prev_index
        .checked_add(1)
        .ok_or_else(|| bad("prev_index overflows"))?;
    for e in &req.entries {
        if e.index != expect {
            return Err(bad(format!(
                "entry {} where {expect} was expected",
                e.index
            )));
        }
        if e.term > req.term {
            return Err(bad(format!(
                "entry {} is of a newer term than the message",
                e.index
            )));
        }
        match &e.command {
            Command::Write {
                key,
                value,
                version,
            } => {
                key_value(key, value)?;
                counter_version(*version)?;
            }
            Command::TermStart { floor, window } => {
                counter_version(*floor)?;
                term("window", *window)?;
            }
            Command::Config { config } => ctx.config(config)?,
        }
        expect = expect
            .checked_add(1)
            .ok_or_else(|| bad("index overflows"))?;
    }
    Ok(())
}

/// A snapshot chunk.
///
/// # Errors
/// 400.
pub fn snapshot(ctx: &Context<'_>, req: &SnapshotRequest) -> Result<(), Invalid> {
    ctx.member(req.leader)?;
    term("term", req.term)?;
    if req.last_term > req.term {
        return Err(bad("last_term is newer than the message's term"));
    }
    ctx.config(&req.config)?;
    ctx.config(&req.base_config)?;
    counter_version(req.floor)?;
    counter_version(req.max_version)?;
    term("window", req.window)?;
    if req.terms.len() > MAX_TERM_RUNS {
        return Err(bad("too many term runs"));
    }
    let mut prev = (0, 0);
    for &(start, t) in &req.terms {
        if start <= prev.0 || t <= prev.1 || t > req.term || start > req.last_index {
            return Err(bad("term runs must grow and end at the snapshot"));
        }
        prev = (start, t);
    }
    req.records.iter().try_for_each(counter_record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kv_shared::cluster::DelayProfile;
    use kv_shared::leader_follower::LogEntry;

    fn ctx() -> Context<'static> {
        Context {
            me: 1,
            peers: &[2, 3],
            n: 3,
        }
    }

    fn append_with(entries: Vec<LogEntry>) -> AppendRequest {
        AppendRequest {
            term: 4,
            leader: 2,
            prev_index: 7,
            prev_term: 3,
            entries,
            leader_commit: 7,
            leader_last: 9,
            config: ClusterConfig::new(3, 2, 2, DelayProfile::OFF).unwrap(),
            config_index: 0,
            sent_at_ms: 0,
        }
    }

    fn write(index: u64, version: Version) -> LogEntry {
        LogEntry {
            index,
            term: 4,
            command: Command::Write {
                key: "k".into(),
                value: "v".into(),
                version,
            },
        }
    }

    #[test]
    fn appends_must_be_consecutive_valid_and_from_a_member() {
        let c = ctx();
        assert!(append(&c, &append_with(vec![write(8, 1), write(9, 2)])).is_ok());
        assert!(
            append(&c, &append_with(vec![write(9, 1)])).is_err(),
            "a gap"
        );
        assert!(append(&c, &append_with(vec![write(8, u64::MAX)])).is_err());
        let mut stranger = append_with(vec![]);
        stranger.leader = 7;
        assert!(append(&c, &stranger).unwrap_err().0.contains("node 7"));
        let mut huge = append_with(vec![]);
        huge.term = u64::MAX;
        assert!(append(&c, &huge).is_err());
        let mut forged = append_with(vec![]);
        forged.config.w = 0;
        assert!(append(&c, &forged).is_err());
        forged.config.w = 2;
        forged.config.delay_profile.send_ms = u32::MAX;
        assert!(append(&c, &forged).is_err());
        let mut nul = append_with(vec![write(8, 1)]);
        if let Command::Write { key, .. } = &mut nul.entries[0].command {
            *key = "a\0b".into();
        }
        assert!(append(&c, &nul).is_err());
    }

    #[test]
    fn clocks_far_ahead_and_epochs_that_jump_are_refused() {
        let wall = 1_800_000_000_000;
        let at = |ms: u64| {
            Stamp {
                physical: ms - crate::leaderless::hlc::EPOCH_UNIX_MS,
                logical: 0,
                node: 1,
            }
            .pack()
        };
        assert!(clock("clock", at(wall + 400), wall, 500).is_ok());
        assert!(clock("clock", at(wall + 600), wall, 500)
            .unwrap_err()
            .0
            .contains("600 ms ahead"));
        assert!(clock("clock", u64::MAX, wall, 500).is_err());
        let c = ctx();
        let env = |epoch| ConfigEnvelope {
            config: ClusterConfig::new(3, 2, 2, DelayProfile::OFF).unwrap(),
            epoch,
            origin: 2,
        };
        assert!(envelope(&c, &env(5), 4).is_ok());
        assert!(envelope(&c, &env(u64::MAX), 4).is_err());
        assert!(envelope(&c, &env(4 + MAX_EPOCH_STEP + 1), 4).is_err());
    }
}
