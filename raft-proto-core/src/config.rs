//! Node configuration and the state recovered from storage, both validated on construction.

use bytes::Bytes;

use crate::codec::{decode_membership, MembershipDecodeError};
use crate::membership::{InvalidMembership, Membership};
use crate::types::{Entry, EntryKind, HardState, Index, NodeId, SnapshotMeta, Term, NO_NODE};

/// Largest log index the core accepts from storage; far beyond any real log, it leaves room so
/// index arithmetic never overflows.
pub const MAX_INDEX: Index = u64::MAX / 4;

/// Largest accepted election timeout in ticks (randomised timeouts reach twice this).
pub const MAX_ELECTION_TIMEOUT_TICKS: u32 = u32::MAX / 4;

/// Static configuration of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// This node's id (non-zero).
    pub id: NodeId,
    /// The initial voters, this node included: the configuration of a new cluster, used only
    /// while neither the log nor a snapshot holds one (the first leader records it in the log).
    /// Empty for a node that joins an existing cluster: it waits until a leader adds it.
    pub voters: Vec<NodeId>,
    /// Opaque data of initial voters (the driver keeps their addresses there), recorded with
    /// the initial configuration.
    pub voter_data: Vec<(NodeId, Bytes)>,
    /// Base election timeout in ticks. The effective timeout is drawn from
    /// `[election_timeout_ticks, 2 * election_timeout_ticks)` after each reset.
    pub election_timeout_ticks: u32,
    /// Ticks between two heartbeats from the leader. Must be below the election timeout.
    pub heartbeat_interval_ticks: u32,
    /// Run a pre-vote round before raising the term, so a partitioned node cannot disrupt.
    pub pre_vote: bool,
    /// A leader that has not heard from a quorum within an election timeout steps down, and
    /// followers that hear from a leader ignore vote requests for an election timeout.
    pub check_quorum: bool,
    /// Upper bound of entry bytes in one AppendEntries message.
    pub max_message_bytes: u64,
    /// Maximum AppendEntries messages in flight to one follower.
    pub max_inflight_messages: usize,
    /// Maximum entry bytes in flight to one follower.
    pub max_inflight_bytes: u64,
    /// Largest accepted proposal payload.
    pub max_proposal_bytes: u64,
    /// Bytes of uncommitted entries above which a leader refuses new proposals.
    pub max_uncommitted_bytes: u64,
    /// Upper bound of entry bytes in one `Apply` output.
    pub max_apply_bytes: u64,
    /// Entry bytes handed out in `Apply` outputs and not yet reported applied
    /// (`Input::Applied`) beyond which no more are handed out: how far applying may run ahead
    /// of the state machine (after a restart, the whole committed log would otherwise go at once).
    pub max_apply_backlog_bytes: u64,
    /// Bytes of applied, durable entries the log keeps in memory for followers that lag a
    /// little. Older ones are dropped from memory and read back from storage when needed
    /// (`Output::FetchEntries`); entries not yet applied or durable always stay.
    pub log_cache_bytes: u64,
    /// Snapshot policy: take a snapshot once this many entries were applied since the last
    /// one (`None`: not by count).
    pub snapshot_after_entries: Option<u64>,
    /// Snapshot policy: take a snapshot once this many bytes of entries were applied since
    /// the last one (`None`: not by size). Either threshold triggers.
    pub snapshot_after_bytes: Option<u64>,
    /// Entries left in the log below a new snapshot, for followers that lag a little: after a
    /// snapshot at index `s`, the log is compacted through `s - compaction_keep_entries`.
    pub compaction_keep_entries: u64,
    /// Largest snapshot chunk in one message (also capped by `max_message_bytes`).
    pub snapshot_chunk_bytes: u64,
    /// Snapshot bytes sent to one follower and not yet acknowledged, at most.
    pub max_snapshot_inflight_bytes: u64,
    /// Largest snapshot a follower accepts from a leader (a chunk announcing a larger total
    /// size is refused).
    pub max_snapshot_bytes: u64,
    /// A learner is promoted to voter only once it lacks at most this many of the leader's
    /// entries.
    pub learner_catch_up_entries: u64,
    /// Seed of the core's pseudo-random generator (election timeouts).
    pub seed: u64,
}

impl Config {
    /// A configuration with the default timeouts and limits.
    pub fn new(id: NodeId, voters: impl Into<Vec<NodeId>>) -> Self {
        Config {
            id,
            voters: voters.into(),
            voter_data: Vec::new(),
            election_timeout_ticks: 10,
            heartbeat_interval_ticks: 2,
            pre_vote: true,
            check_quorum: true,
            max_message_bytes: 1 << 20,
            max_inflight_messages: 256,
            max_inflight_bytes: 32 << 20,
            max_proposal_bytes: 1 << 20,
            max_uncommitted_bytes: 64 << 20,
            max_apply_bytes: 4 << 20,
            max_apply_backlog_bytes: 16 << 20,
            log_cache_bytes: 8 << 20,
            snapshot_after_entries: Some(100_000),
            snapshot_after_bytes: Some(64 << 20),
            compaction_keep_entries: 10_000,
            snapshot_chunk_bytes: 1 << 20,
            max_snapshot_inflight_bytes: 4 << 20,
            max_snapshot_bytes: 64 << 30,
            learner_catch_up_entries: 1000,
            seed: id,
        }
    }

    /// The initial configuration: [`Config::voters`] with their data (empty for a joining node).
    pub fn initial_membership(&self) -> Result<Membership, ConfigError> {
        Membership::with_voters(self.voters.iter().copied())
            .with_data(self.voter_data.iter().cloned())
            .map_err(ConfigError::VoterData)
    }

    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == NO_NODE {
            return Err(ConfigError::ZeroNodeId);
        }
        let mut seen: Vec<NodeId> = self.voters.clone();
        seen.sort_unstable();
        for w in seen.windows(2) {
            if w[0] == w[1] {
                return Err(ConfigError::DuplicateVoter(w[0]));
            }
        }
        if seen.first() == Some(&NO_NODE) {
            return Err(ConfigError::ZeroNodeId);
        }
        if !self.voters.is_empty() && !self.voters.contains(&self.id) {
            return Err(ConfigError::NotAVoter(self.id));
        }
        self.initial_membership()?;
        if self.election_timeout_ticks == 0 || self.heartbeat_interval_ticks == 0 {
            return Err(ConfigError::ZeroTimeout);
        }
        if self.election_timeout_ticks > MAX_ELECTION_TIMEOUT_TICKS {
            return Err(ConfigError::ElectionTimeoutTooLarge(
                self.election_timeout_ticks,
            ));
        }
        if self.heartbeat_interval_ticks >= self.election_timeout_ticks {
            return Err(ConfigError::HeartbeatNotBelowElection {
                heartbeat: self.heartbeat_interval_ticks,
                election: self.election_timeout_ticks,
            });
        }
        for (name, v) in [
            ("max_message_bytes", self.max_message_bytes),
            ("max_inflight_messages", self.max_inflight_messages as u64),
            ("max_inflight_bytes", self.max_inflight_bytes),
            ("max_proposal_bytes", self.max_proposal_bytes),
            ("max_uncommitted_bytes", self.max_uncommitted_bytes),
            ("max_apply_bytes", self.max_apply_bytes),
            ("max_apply_backlog_bytes", self.max_apply_backlog_bytes),
            ("snapshot_chunk_bytes", self.snapshot_chunk_bytes),
            (
                "max_snapshot_inflight_bytes",
                self.max_snapshot_inflight_bytes,
            ),
            (
                "snapshot_after_entries",
                self.snapshot_after_entries.unwrap_or(1),
            ),
            (
                "snapshot_after_bytes",
                self.snapshot_after_bytes.unwrap_or(1),
            ),
        ] {
            if v == 0 {
                return Err(ConfigError::ZeroLimit(name));
            }
        }
        Ok(())
    }
}

/// Why a [`Config`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Node id 0 is reserved for "no node".
    #[error("node id 0 is reserved")]
    ZeroNodeId,
    /// The voters' data is not valid (data for a non-voter, or too large).
    #[error("bad voter data: {0}")]
    VoterData(InvalidMembership),
    /// A voter id appears twice.
    #[error("voter {0} is listed more than once")]
    DuplicateVoter(NodeId),
    /// This node is not among the (non-empty) initial voters.
    #[error("node {0} is not in the voter set (leave it empty to join an existing cluster)")]
    NotAVoter(NodeId),
    /// A timeout is zero.
    #[error("timeouts must be at least one tick")]
    ZeroTimeout,
    /// Heartbeats must be more frequent than elections.
    #[error("heartbeat interval ({heartbeat} ticks) must be below the election timeout ({election} ticks)")]
    HeartbeatNotBelowElection {
        /// Configured heartbeat interval.
        heartbeat: u32,
        /// Configured election timeout.
        election: u32,
    },
    /// The election timeout is beyond [`MAX_ELECTION_TIMEOUT_TICKS`].
    #[error("election timeout of {0} ticks is too large (at most {MAX_ELECTION_TIMEOUT_TICKS})")]
    ElectionTimeoutTooLarge(u32),
    /// A limit is zero.
    #[error("limit {0} must be greater than zero")]
    ZeroLimit(&'static str),
}

/// What a node recovers from its storage on start.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecoveredState {
    /// The last durable hard state.
    pub hard_state: HardState,
    /// The latest snapshot.
    pub snapshot: Option<SnapshotMeta>,
    /// The log entries kept, consecutive: from right after the snapshot's last index, or from
    /// below it when storage still holds a tail the snapshot covers (kept for followers a
    /// little behind; it must then hold the snapshot's last entry, with the snapshot's term).
    pub entries: Vec<Entry>,
}

impl RecoveredState {
    /// Checks that the recovered pieces are consistent with each other.
    pub fn validate(&self) -> Result<(), RecoveryError> {
        let snap = self.snapshot.clone().unwrap_or_default();
        if snap.last_index > MAX_INDEX {
            return Err(RecoveryError::IndexOutOfRange {
                index: snap.last_index,
            });
        }
        if snap.last_term > self.hard_state.term {
            return Err(RecoveryError::TermAboveHardState {
                index: snap.last_index,
                term: snap.last_term,
                hard_term: self.hard_state.term,
            });
        }
        let mut expected = snap.last_index + 1;
        let mut prev_term: Term = snap.last_term;
        if let Some(first) = self.entries.first() {
            if first.index <= snap.last_index && snap.last_index > 0 {
                // A kept tail below the snapshot: it must continue into the snapshot's entry.
                let at = (snap.last_index - first.index) as usize;
                match self.entries.get(at) {
                    Some(e) if e.index == snap.last_index && e.term == snap.last_term => {}
                    _ => {
                        return Err(RecoveryError::TailDoesNotMatchSnapshot {
                            first: first.index,
                            index: snap.last_index,
                            term: snap.last_term,
                        })
                    }
                }
                if first.index == 0 {
                    return Err(RecoveryError::Gap {
                        expected: 1,
                        found: 0,
                    });
                }
                expected = first.index;
                prev_term = 0;
            }
        }
        for e in &self.entries {
            if e.index != expected {
                return Err(RecoveryError::Gap {
                    expected,
                    found: e.index,
                });
            }
            if e.term < prev_term {
                return Err(RecoveryError::TermDecreases { index: e.index });
            }
            if e.term > self.hard_state.term {
                return Err(RecoveryError::TermAboveHardState {
                    index: e.index,
                    term: e.term,
                    hard_term: self.hard_state.term,
                });
            }
            if e.kind == EntryKind::Config {
                decode_membership(&e.data).map_err(|reason| RecoveryError::BadConfigEntry {
                    index: e.index,
                    reason,
                })?;
            }
            prev_term = e.term;
            expected = expected.saturating_add(1);
        }
        let last: Index = expected - 1;
        if self.hard_state.commit > last {
            return Err(RecoveryError::CommitBeyondLog {
                commit: self.hard_state.commit,
                last,
            });
        }
        Ok(())
    }
}

/// Why a [`RecoveredState`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecoveryError {
    /// Entries are not consecutive after the snapshot.
    #[error("log entries are not consecutive: expected index {expected}, found {found}")]
    Gap {
        /// The index that should come next.
        expected: Index,
        /// The index found.
        found: Index,
    },
    /// An entry has a lower term than the entry before it.
    #[error("entry {index} has a lower term than its predecessor")]
    TermDecreases {
        /// The entry's index.
        index: Index,
    },
    /// An entry's term is above the durable current term.
    #[error("entry {index} has term {term}, above the hard state's term {hard_term}")]
    TermAboveHardState {
        /// The entry's index.
        index: Index,
        /// The entry's term.
        term: Term,
        /// The hard state's term.
        hard_term: Term,
    },
    /// The durable commit index points past the log.
    #[error("commit index {commit} is beyond the last log index {last}")]
    CommitBeyondLog {
        /// The recovered commit index.
        commit: Index,
        /// The last recovered index.
        last: Index,
    },
    /// Entries kept below the snapshot do not hold the snapshot's last entry.
    #[error("the log kept from index {first} does not hold the snapshot's last entry {index} of term {term}")]
    TailDoesNotMatchSnapshot {
        /// The first kept index.
        first: Index,
        /// The snapshot's last index.
        index: Index,
        /// The snapshot's last term.
        term: Term,
    },
    /// A configuration entry's payload is not a valid membership.
    #[error("configuration entry {index} cannot be decoded: {reason}")]
    BadConfigEntry {
        /// The entry's index.
        index: Index,
        /// Why.
        reason: MembershipDecodeError,
    },
    /// An index beyond what the core accepts ([`MAX_INDEX`]).
    #[error("log index {index} is out of range")]
    IndexOutOfRange {
        /// The offending index.
        index: Index,
    },
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}
