//! # raft-proto-core
//!
//! A deterministic, sans-IO implementation of the Raft consensus protocol.
//!
//! The core never touches a clock, a socket, a file, a thread or the operating system's random
//! generator. A driver feeds it [`Input`]s (ticks, received messages, proposals, durability
//! reports) through [`RaftNode::step`] and carries out the [`Output`]s it returns (send a message,
//! persist entries and hard state, apply committed entries, answer a proposal).
//!
//! Rules the core keeps:
//! - **Determinism**: the same configuration (seed included) and the same inputs give the same
//!   outputs, bit for bit.
//! - **Durability before promises**: a vote grant or an append acknowledgement is released only
//!   after the state it depends on was reported durable with [`Input::Persisted`]. A leader sends
//!   entries before its own write is durable but counts itself toward a quorum only afterwards.
//! - **No panic on input**: anything a peer can send is ignored or rejected.
//! - **Zero-copy payloads**: entry payloads are [`bytes::Bytes`] and are never copied.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod codec;
mod config;
mod durability;
mod election;
mod io;
mod log;
mod membership;
pub mod message;
mod node;
mod progress;
pub mod quorum;
mod reconfig;
mod replication;
mod rng;
mod snapshot;
mod status;
pub mod storage;
mod tracker;
mod transfer;
mod types;

pub use config::{
    Config, ConfigError, RecoveredState, RecoveryError, MAX_ELECTION_TIMEOUT_TICKS, MAX_INDEX,
};
pub use io::{Event, Input, Output, PersistWrite, Proposal, ProposeError, TransferError};
pub use membership::{
    ChangeError, ChangeStep, InvalidMembership, Membership, MAX_MEMBERS, MAX_NODE_DATA_BYTES,
};
pub use message::Message;
pub use node::RaftNode;
pub use progress::ReplicationState;
pub use status::{PeerStatus, SnapshotStatus, SnapshotTransfer, Status};
pub use types::{
    Entry, EntryKind, HardState, Index, LogId, NodeId, RequestId, Role, SnapshotMeta, Term, NO_NODE,
};
