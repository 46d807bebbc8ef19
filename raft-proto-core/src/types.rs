//! Plain data types shared by every part of the core: identifiers, log entries, hard state.

use bytes::Bytes;

/// Identifier of a node in the cluster. `0` is reserved to mean "no node".
pub type NodeId = u64;
/// A Raft term.
pub type Term = u64;
/// A log index. The first real entry has index 1; index 0 is the empty log.
pub type Index = u64;
/// An opaque identifier a driver attaches to a proposal to match its outcome.
pub type RequestId = u64;

/// Marker for "no node" in vote and leader fields.
pub const NO_NODE: NodeId = 0;

/// What a log entry carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A command for the state machine.
    Normal,
    /// The empty entry a new leader appends to commit entries of earlier terms (Figure 8).
    Noop,
    /// A configuration: the payload is the new [`crate::Membership`], encoded by
    /// [`crate::codec::encode_membership`]. It takes effect when appended.
    Config,
}

impl EntryKind {
    /// The kind's byte in encodings (wire and storage).
    pub fn to_byte(self) -> u8 {
        match self {
            EntryKind::Normal => 0,
            EntryKind::Noop => 1,
            EntryKind::Config => 2,
        }
    }

    /// The kind of an encoded byte, if it names one.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(EntryKind::Normal),
            1 => Some(EntryKind::Noop),
            2 => Some(EntryKind::Config),
            _ => None,
        }
    }
}

/// One entry of the replicated log. The payload is reference counted and never copied by the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Term of the leader that created the entry.
    pub term: Term,
    /// Position of the entry in the log.
    pub index: Index,
    /// What the entry is.
    pub kind: EntryKind,
    /// The payload (empty for no-ops).
    pub data: Bytes,
}

impl Entry {
    /// Approximate size of the entry for flow-control and batching limits.
    #[inline]
    pub fn size(&self) -> u64 {
        self.data.len() as u64 + ENTRY_OVERHEAD
    }
}

/// Bytes of framing counted per entry on top of its payload.
pub(crate) const ENTRY_OVERHEAD: u64 = 24;

/// The state a node must keep durable before acting on it: current term, vote and commit index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: Term,
    /// Candidate voted for in `term`, or [`NO_NODE`].
    pub vote: NodeId,
    /// Highest index known committed (a lower bound; may lag behind the in-memory value).
    pub commit: Index,
}

/// Position of an entry: its term and index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct LogId {
    /// Term of the entry.
    pub term: Term,
    /// Index of the entry.
    pub index: Index,
}

/// Metadata of a snapshot: the log prefix it replaces and the membership at its last entry.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct SnapshotMeta {
    /// Index of the last entry the snapshot covers.
    pub last_index: Index,
    /// Term of that entry.
    pub last_term: Term,
    /// The cluster's membership as of that entry (shared: it changes rarely, and snapshot
    /// metadata travels in many outputs and messages).
    pub membership: std::sync::Arc<crate::membership::Membership>,
}

impl SnapshotMeta {
    /// The snapshot's last entry.
    pub fn last_id(&self) -> LogId {
        LogId {
            term: self.last_term,
            index: self.last_index,
        }
    }
}

/// The role a node plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Follows a leader, grants votes, replicates entries.
    Follower,
    /// Asks peers whether it could win an election, without raising its term (PreVote).
    PreCandidate,
    /// Campaigns for leadership in a new term.
    Candidate,
    /// Accepts proposals and replicates them.
    Leader,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        })
    }
}
