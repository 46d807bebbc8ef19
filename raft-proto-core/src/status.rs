//! A cheap snapshot of a node's state for observability.

use std::sync::Arc;

use smallvec::SmallVec;

use crate::membership::Membership;

use crate::progress::ReplicationState;
pub use crate::snapshot::SnapshotStatus;
use crate::types::{Index, NodeId, Role, Term};

/// What a node looks like right now. Built without touching the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// This node.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its current term.
    pub term: Term,
    /// Who it voted for in this term (0 = nobody).
    pub vote: NodeId,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Highest committed index.
    pub commit: Index,
    /// Highest index handed out for applying.
    pub applying: Index,
    /// Highest index the driver reported applied.
    pub applied: Index,
    /// Last index in the log.
    pub last_index: Index,
    /// Highest index durable locally.
    pub persisted: Index,
    /// First index the log still holds (entries before it are compacted into a snapshot).
    pub first_index: Index,
    /// Log entries held in memory (unapplied ones and the cache of applied ones).
    pub log_entries_in_memory: u64,
    /// Bytes of those entries (payloads and a fixed overhead each).
    pub log_bytes_in_memory: u64,
    /// The latest snapshot, and any being taken or received.
    pub snapshot: SnapshotStatus,
    /// The configuration in force (the latest in the log, committed or not).
    pub membership: Arc<Membership>,
    /// Index of the entry (or snapshot) that holds it.
    pub membership_index: Index,
    /// On a leader: the target of a leadership transfer under way.
    pub transfer: Option<NodeId>,
    /// Per-follower replication state (on a leader only).
    pub peers: SmallVec<[PeerStatus; 6]>,
}

/// A leader's view of one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerStatus {
    /// The follower.
    pub id: NodeId,
    /// Whether it votes (a learner does not).
    pub voter: bool,
    /// Leader ticks since it was last heard from.
    pub silent_ticks: u32,
    /// Highest index known replicated there.
    pub matched: Index,
    /// Next index to send.
    pub next: Index,
    /// Probing or streaming.
    pub state: ReplicationState,
    /// Append messages in flight.
    pub inflight: usize,
    /// Heard from during the current CheckQuorum round.
    pub recent_active: bool,
    /// A snapshot being sent to it.
    pub snapshot: Option<SnapshotTransfer>,
}

/// A snapshot on its way to a follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotTransfer {
    /// The snapshot's last index.
    pub index: Index,
    /// Bytes the follower confirmed.
    pub acked: u64,
    /// The snapshot's size, once known.
    pub total: Option<u64>,
}
