//! The panels of the page. Each takes `Props` with plain data and `Callback`s
//! and keeps no state beyond its form inputs.
//!
//! - [`header`]: the serving node's health and the state of the live feed.
//! - [`topology`]: the replicas as a diagram, with messages in flight.
//! - [`writes`]: recent writes on a timeline: sends, acks, the client's answer.
//! - [`ops`]: set / get / local_read against a chosen replica.
//! - [`controls`]: W, R and the delay profile.
//! - [`lag`]: each replica's lag over the last minute.
//! - [`events`]: the event log: elections, faults, outages, W/R changes, 503s,
//!   hints handed off, anti-entropy rounds.
//! - [`reads`]: coordinated reads, the quorum picture, the staleness curve.
//! - [`time`]: pause, slow motion, back to live, the history slider.
//! - [`faults`]: faults injected into a chosen node, healed one by one or all.

pub mod controls;
pub mod events;
pub mod faults;
pub mod header;
pub mod lag;
pub mod ops;
pub mod reads;
pub mod time;
pub mod topology;
pub mod writes;
