//! The messages nodes exchange. Their wire encoding lives in [`crate::codec`].

use bytes::Bytes;

use crate::types::{Entry, Index, LogId, SnapshotMeta, Term};

/// A message between two nodes of the cluster. The sender is known from the envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A candidate (or pre-candidate) asks for a vote.
    RequestVote(RequestVote),
    /// The answer to a [`RequestVote`].
    RequestVoteResponse(RequestVoteResponse),
    /// The leader replicates entries (or probes for the follower's log position).
    AppendEntries(AppendEntries),
    /// The answer to an [`AppendEntries`].
    AppendEntriesResponse(AppendEntriesResponse),
    /// The leader asserts its leadership and shares the commit index.
    Heartbeat(Heartbeat),
    /// The answer to a [`Heartbeat`].
    HeartbeatResponse(HeartbeatResponse),
    /// One chunk of a snapshot for a follower whose next entry the leader compacted away.
    InstallSnapshot(Box<InstallSnapshot>),
    /// The answer to an [`InstallSnapshot`] chunk (the last chunk is answered with an
    /// [`AppendEntriesResponse`] once the snapshot is installed).
    InstallSnapshotResponse(InstallSnapshotResponse),
    /// The leader hands leadership over: the receiver campaigns at once.
    TimeoutNow(TimeoutNow),
}

impl Message {
    /// The term the message was sent in.
    pub fn term(&self) -> Term {
        match self {
            Message::RequestVote(m) => m.term,
            Message::RequestVoteResponse(m) => m.term,
            Message::AppendEntries(m) => m.term,
            Message::AppendEntriesResponse(m) => m.term,
            Message::Heartbeat(m) => m.term,
            Message::HeartbeatResponse(m) => m.term,
            Message::InstallSnapshot(m) => m.term,
            Message::InstallSnapshotResponse(m) => m.term,
            Message::TimeoutNow(m) => m.term,
        }
    }

    /// A short name of the message kind, for traces and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::RequestVote(m) if m.pre_vote => "PreVote",
            Message::RequestVote(_) => "RequestVote",
            Message::RequestVoteResponse(m) if m.pre_vote => "PreVoteResponse",
            Message::RequestVoteResponse(_) => "RequestVoteResponse",
            Message::AppendEntries(_) => "AppendEntries",
            Message::AppendEntriesResponse(_) => "AppendEntriesResponse",
            Message::Heartbeat(_) => "Heartbeat",
            Message::HeartbeatResponse(_) => "HeartbeatResponse",
            Message::InstallSnapshot(_) => "InstallSnapshot",
            Message::InstallSnapshotResponse(_) => "InstallSnapshotResponse",
            Message::TimeoutNow(_) => "TimeoutNow",
        }
    }
}

/// RequestVote (Figure 2), also used for PreVote when `pre_vote` is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestVote {
    /// The candidate's term; for a pre-vote, the term it would campaign in.
    pub term: Term,
    /// A pre-vote: the receiver changes no state.
    pub pre_vote: bool,
    /// Term and index of the candidate's last log entry.
    pub last_log: LogId,
    /// The election follows a leadership transfer ([`TimeoutNow`]): voters grant it even
    /// while they hear from the current leader (the leader lease does not apply).
    pub transfer: bool,
}

/// The answer to a [`RequestVote`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestVoteResponse {
    /// The voter's term (for a granted pre-vote, the term of the request).
    pub term: Term,
    /// Answer to a pre-vote.
    pub pre_vote: bool,
    /// Whether the vote was granted.
    pub granted: bool,
}

/// AppendEntries (Figure 2). With no entries it probes the follower's log position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendEntries {
    /// The leader's term.
    pub term: Term,
    /// The entry immediately preceding `entries`.
    pub prev: LogId,
    /// The entries to store, in index order starting at `prev.index + 1`.
    pub entries: Vec<Entry>,
    /// The leader's commit index.
    pub commit: Index,
}

/// The answer to an [`AppendEntries`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendEntriesResponse {
    /// The follower's term.
    pub term: Term,
    /// What happened.
    pub result: AppendResult,
}

/// Outcome of an [`AppendEntries`] on the follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendResult {
    /// The follower's log matches the leader's up to and including `match_index`, durably.
    Success {
        /// Highest index known to match the leader.
        match_index: Index,
    },
    /// The follower's log does not contain the entry at `rejected` with the expected term.
    Reject {
        /// The `prev.index` of the rejected request.
        rejected: Index,
        /// Conflict hint: the follower's last entry at or below `rejected` whose term is at
        /// most the leader's `prev.term`. The leader can skip back a term at a time.
        hint: LogId,
    },
}

/// A heartbeat from the leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// The leader's term.
    pub term: Term,
    /// The commit index, capped at what the follower is known to have.
    pub commit: Index,
}

/// The answer to a [`Heartbeat`] (also sent to a stale leader to make it step down).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatResponse {
    /// The follower's term.
    pub term: Term,
}

/// One chunk of a snapshot, sent by the leader. Chunks of one transfer share `meta` and `size`
/// and arrive at increasing offsets; the chunk that reaches `size` is the last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallSnapshot {
    /// The leader's term.
    pub term: Term,
    /// What the snapshot covers: its last entry and the membership there.
    pub meta: SnapshotMeta,
    /// Total size of the snapshot's data in bytes.
    pub size: u64,
    /// Where `data` starts in the snapshot.
    pub offset: u64,
    /// The chunk's bytes.
    pub data: Bytes,
}

/// The answer to an [`InstallSnapshot`] chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstallSnapshotResponse {
    /// The follower's term.
    pub term: Term,
    /// The last entry of the snapshot the answer is about.
    pub snapshot: LogId,
    /// Where the transfer stands on the follower.
    pub result: SnapshotAck,
}

/// How a follower answers a snapshot chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotAck {
    /// Every byte before `next_offset` arrived (not yet durable: a restart starts over).
    Received {
        /// The offset the follower expects next.
        next_offset: u64,
    },
    /// The chunk was not the one expected (lost chunks, a restart, a new transfer): send from
    /// `from` on (0 starts the transfer over).
    Resend {
        /// The offset the follower expects.
        from: u64,
    },
}

/// The leader tells the receiver (a voter whose log it knows to be up to date) to campaign now,
/// without a pre-vote: leadership transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeoutNow {
    /// The leader's term.
    pub term: Term,
}
