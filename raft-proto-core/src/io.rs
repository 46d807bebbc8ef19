//! What goes into the core ([`Input`]) and what comes out of it ([`Output`]).

use std::sync::Arc;

use bytes::Bytes;

use crate::membership::{ChangeError, ChangeStep, Membership};
use crate::message::Message;
use crate::types::{Entry, HardState, Index, LogId, NodeId, RequestId, Role, SnapshotMeta, Term};

/// One event the driver feeds to [`crate::RaftNode::step`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// One logical clock tick. The driver decides how much wall time a tick is.
    Tick,
    /// A message arrived from a peer. `from` is the authenticated sender.
    Receive {
        /// The sender.
        from: NodeId,
        /// The message.
        msg: Message,
    },
    /// A client proposes a command. Answered by [`Output::Proposed`].
    Propose(Proposal),
    /// Several proposals at once: they share one log write and one message per follower.
    ProposeBatch(Vec<Proposal>),
    /// Every [`PersistWrite`] with `seq` up to and including this one is durable.
    Persisted {
        /// The highest durable write sequence number.
        seq: u64,
    },
    /// The state machine has applied every entry up to and including `index`. Until this is
    /// reported, applied entries stay in memory and [`Output::Apply`] stops once
    /// `Config::max_apply_backlog_bytes` are handed out.
    Applied {
        /// Highest applied index.
        index: Index,
    },
    /// The entries an [`Output::FetchEntries`] asked for, read from storage: those with
    /// indexes from `lo` on, in order (fewer than asked, or none, if storage holds fewer).
    EntriesFetched {
        /// The follower they were read for.
        to: NodeId,
        /// The first index asked for.
        lo: Index,
        /// The entries read.
        entries: Vec<Entry>,
    },
    /// The snapshot an [`Output::TakeSnapshot`] asked for is stored durably (it is now the
    /// latest snapshot in storage).
    SnapshotTaken {
        /// Its last index, as asked.
        index: Index,
    },
    /// The snapshot an [`Output::TakeSnapshot`] asked for could not be taken or stored; the
    /// previous one is still the latest. The core tries again later.
    SnapshotFailed {
        /// Its last index, as asked.
        index: Index,
    },
    /// Take a snapshot now (as soon as possible), whatever the policy says: answered with
    /// [`Output::TakeSnapshot`] unless one is being taken or received, or nothing was applied
    /// since the last one.
    TriggerSnapshot,
    /// The chunk an [`Output::ReadSnapshot`] asked for, read from the latest stored snapshot.
    SnapshotRead {
        /// The follower it was read for (echoed).
        to: NodeId,
        /// The last entry of the snapshot actually read (storage's latest one, which may be
        /// newer than the one asked for).
        snapshot: LogId,
        /// Where the chunk starts (echoed).
        offset: u64,
        /// The bytes read; fewer than asked only at the end.
        data: Bytes,
        /// Size of that snapshot's data.
        total: u64,
    },
    /// Change the cluster's membership (on the leader): the steps apply together, through a
    /// joint configuration when more than one voter changes. Answered by [`Output::Proposed`]
    /// with the position of the configuration entry, or why the change was refused. The
    /// change is done when that entry is applied and, for a joint change, when the entry that
    /// leaves the joint configuration (appended by the leader on its own) is applied too.
    ChangeMembership {
        /// The driver's identifier, echoed in [`Output::Proposed`].
        request: RequestId,
        /// What to change.
        steps: Vec<ChangeStep>,
    },
    /// Hand leadership over to voter `to`, or to the most caught-up voter heard from lately
    /// (`None`). Answered by [`Output::Transferring`]. The leader brings the target up to date
    /// and tells it to campaign; meanwhile proposals are refused
    /// ([`ProposeError::TransferInProgress`]). Without a new leader within an election timeout
    /// the transfer is abandoned ([`Event::TransferAborted`]).
    TransferLeadership {
        /// The driver's identifier, echoed in [`Output::Transferring`].
        request: RequestId,
        /// The voter to hand over to.
        to: Option<NodeId>,
    },
}

/// A command proposed for replication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// The driver's identifier, echoed in [`Output::Proposed`].
    pub request: RequestId,
    /// The command.
    pub data: Bytes,
}

/// One action the core asks the driver to carry out. Outputs are ordered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `msg` to node `to`. Delivery may fail; the protocol retries.
    Send {
        /// The destination.
        to: NodeId,
        /// The message.
        msg: Message,
    },
    /// Make a write durable, after every earlier write, and then report it with
    /// [`Input::Persisted`]. Writes may be grouped: reporting the last `seq` of a group covers all.
    Persist(PersistWrite),
    /// Apply these committed entries to the state machine, in order. They are durable locally.
    Apply {
        /// Consecutive committed entries.
        entries: Vec<Entry>,
    },
    /// The answer to a proposal: its position in the log, or why it was refused. An accepted
    /// proposal's outcome is known when the entry with this exact [`LogId`] is applied; if a
    /// different term shows up at that index, the proposal was lost.
    Proposed {
        /// The driver's identifier of the proposal.
        request: RequestId,
        /// Where the entry was placed, or the refusal.
        result: Result<LogId, ProposeError>,
    },
    /// This node stopped leading before the proposal's entry was applied here: its outcome is
    /// unknown (it may still commit under the next leader).
    ProposalUnknown {
        /// The driver's identifier of the proposal.
        request: RequestId,
        /// Where the entry was placed.
        id: LogId,
    },
    /// Read the stored entries with indexes `lo..hi` (at most about `max_bytes` of them, at
    /// least one) and hand them back with [`Input::EntriesFetched`]. The leader asks for
    /// entries that left its memory when a lagging follower needs them; they are durable, so
    /// the read may run beside the writes. A follower waits for one read at a time.
    FetchEntries {
        /// The follower the entries are for (echo it back).
        to: NodeId,
        /// First index to read.
        lo: Index,
        /// One past the last index to read.
        hi: Index,
        /// Byte budget of the read (payload sizes; one entry is returned even if larger).
        max_bytes: u64,
    },
    /// Snapshot the state machine once it has applied everything handed out so far, which is
    /// exactly up to `meta.last_index`, and store it as the latest snapshot with `meta` (begin,
    /// chunks, finish: durable). Then report [`Input::SnapshotTaken`] or
    /// [`Input::SnapshotFailed`]. Applying may go on while the snapshot is written out.
    TakeSnapshot {
        /// What the snapshot covers.
        meta: SnapshotMeta,
    },
    /// Drop stored entries up to and including `through` (the latest snapshot covers them).
    /// Needs no report; a crash before it simply leaves them.
    Compact {
        /// Last index to drop.
        through: Index,
    },
    /// Read up to `max_len` bytes of the latest stored snapshot from `offset`, for sending to
    /// follower `to`, and hand them back with [`Input::SnapshotRead`].
    ReadSnapshot {
        /// The follower.
        to: NodeId,
        /// The snapshot the transfer is about (storage may hold a newer one by now).
        snapshot: LogId,
        /// Where to read.
        offset: u64,
        /// How much to read.
        max_len: u64,
    },
    /// Store a chunk of a snapshot being received from the leader: at offset 0, first begin a
    /// new snapshot with `meta` (abandoning any unfinished one); chunks come in order.
    SnapshotChunk {
        /// What the snapshot covers.
        meta: SnapshotMeta,
        /// Where the chunk starts.
        offset: u64,
        /// The chunk.
        data: Bytes,
    },
    /// Make the received snapshot the latest one, durably (`Storage::finish_snapshot`), after
    /// every earlier write and before every later one, then report [`Input::Persisted`] with
    /// `seq` as for a [`PersistWrite`] (sequence numbers are shared).
    InstallSnapshot {
        /// Sequence number of this durable step.
        seq: u64,
        /// The snapshot's metadata.
        meta: SnapshotMeta,
    },
    /// Replace the state machine's state with the latest stored snapshot (it covers up to
    /// `meta.last_index`), after applying every entry handed out before; then report
    /// [`Input::Applied`] with `meta.last_index`. Comes only once that snapshot is durable.
    RestoreSnapshot {
        /// The snapshot's metadata.
        meta: SnapshotMeta,
    },
    /// The configuration in force changed (a configuration entry was appended, or cut from
    /// the log, or a snapshot was installed): `membership` holds from `index` on. The driver
    /// learns the members' addresses from their data here.
    MembershipChanged {
        /// Index of the entry (or snapshot) that holds the configuration.
        index: Index,
        /// The configuration.
        membership: Arc<Membership>,
    },
    /// The answer to [`Input::TransferLeadership`]: the voter leadership goes to (this node
    /// itself when it already leads and was named: nothing to do), or why not.
    Transferring {
        /// The driver's identifier.
        request: RequestId,
        /// The target, or the refusal.
        result: Result<NodeId, TransferError>,
    },
    /// Something observable happened.
    Event(Event),
}

/// A durable write: optionally truncate the log's suffix, append entries, set the hard state.
/// Apply in this order, atomically if the storage allows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PersistWrite {
    /// Sequence number to report in [`Input::Persisted`]. Increases by one per write.
    pub seq: u64,
    /// Delete every stored entry with an index at or above this one before appending.
    pub truncate_from: Option<Index>,
    /// Entries to append, consecutive. The first one's index is `truncate_from` when a cut is
    /// given, otherwise one past the last stored entry.
    pub entries: Vec<Entry>,
    /// New hard state to store, if it changed.
    pub hard_state: Option<HardState>,
}

/// Why a proposal was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// This node is not the leader; `leader_hint` is the leader it knows of, if any.
    #[error("not the leader (leader hint: {leader_hint:?})")]
    NotLeader {
        /// The leader this node currently follows, if known.
        leader_hint: Option<NodeId>,
    },
    /// The command is larger than the configured limit.
    #[error("proposal of {size} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Size of the command.
        size: u64,
        /// The configured limit.
        max: u64,
    },
    /// Too many bytes are waiting to be committed; retry later.
    #[error("overloaded: {uncommitted} bytes uncommitted (limit {max})")]
    Overloaded {
        /// Bytes of uncommitted entries.
        uncommitted: u64,
        /// The configured limit.
        max: u64,
    },
    /// Leadership is being handed over to `to`; retry with the new leader shortly.
    #[error("leadership is being transferred to node {to}; retry shortly")]
    TransferInProgress {
        /// The node taking over.
        to: NodeId,
    },
    /// A membership change was refused.
    #[error("membership change refused: {0}")]
    Membership(#[from] ChangeError),
}

impl ProposeError {
    /// Whether the same request may succeed if retried later (or at the leader hinted at).
    pub fn is_retryable(&self) -> bool {
        match self {
            ProposeError::NotLeader { .. }
            | ProposeError::Overloaded { .. }
            | ProposeError::TransferInProgress { .. } => true,
            ProposeError::TooLarge { .. } => false,
            ProposeError::Membership(e) => matches!(
                e,
                ChangeError::InProgress
                    | ChangeError::LeaderNotReady
                    | ChangeError::LearnerBehind { .. }
            ),
        }
    }
}

/// Why a leadership transfer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// This node is not the leader.
    #[error("not the leader (leader hint: {leader_hint:?})")]
    NotLeader {
        /// The leader this node follows, if known.
        leader_hint: Option<NodeId>,
    },
    /// A transfer is already under way.
    #[error("leadership is already being transferred to node {to}")]
    InProgress {
        /// Its target.
        to: NodeId,
    },
    /// The target is not a member.
    #[error("node {0} is not a member")]
    UnknownNode(NodeId),
    /// The target does not vote (a learner, or a voter on its way out).
    #[error("node {0} is not a voter of the configuration in force (a learner or leaving)")]
    NotAVoter(NodeId),
    /// The target was not heard from within an election timeout.
    #[error("node {id} has not answered for {silent_ticks} ticks")]
    Unreachable {
        /// The target.
        id: NodeId,
        /// Ticks since the leader last heard from it.
        silent_ticks: u32,
    },
    /// No other voter was heard from lately (`to: None`).
    #[error("no other voter can take over (none was heard from lately)")]
    NoCandidate,
}

/// Observable changes, for logs, metrics and tests. They carry no obligation for the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The node's role or term changed.
    RoleChanged {
        /// The new role.
        role: Role,
        /// The term it holds the role in.
        term: Term,
    },
    /// The leader this node knows of changed.
    LeaderChanged {
        /// The new leader, if any.
        leader: Option<NodeId>,
        /// The term.
        term: Term,
    },
    /// A leader stepped down because it had not heard from a quorum for an election timeout.
    CheckQuorumFailed {
        /// The term it led.
        term: Term,
    },
    /// A message that claims to come from node 0 or from this node itself was dropped (any
    /// other sender is heard: the configuration does not filter messages).
    UnknownSender {
        /// The sender.
        from: NodeId,
    },
    /// A snapshot transfer to a follower ended: it installed the snapshot (`installed`), or
    /// it turned out to hold enough of the log for appends to go on.
    SnapshotSent {
        /// The follower.
        to: NodeId,
        /// The snapshot's last index.
        index: Index,
        /// Whether the follower reported the snapshot installed.
        installed: bool,
    },
    /// A leadership transfer to `to` ended without `to` taking over within an election
    /// timeout; proposals are accepted again.
    TransferAborted {
        /// The target.
        to: NodeId,
        /// The term of the leader that tried.
        term: Term,
    },
    /// This leader's removal from the configuration is committed: it stepped down (handing
    /// over to the most caught-up voter, if one was in sync).
    RemovedFromConfiguration {
        /// The term it led.
        term: Term,
        /// The voter told to campaign at once, if any.
        successor: Option<NodeId>,
    },
    /// An input made no sense and was ignored (for example a `Persisted` for a write never
    /// requested, or an append that would rewrite committed entries).
    InvalidInput {
        /// A static description.
        reason: &'static str,
    },
}
