//! The Raft node: state, the `step` entry point, term rules, ticks and durability reports.
//! Elections live in `election.rs`, replication and commit in `replication.rs`, membership
//! changes in `reconfig.rs`, leadership transfer in `transfer.rs`.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::codec::decode_membership;
use crate::config::{Config, RecoveredState, RecoveryError};
use crate::durability::{Durability, Held};
use crate::io::{Event, Input, Output};
use crate::log::RaftLog;
use crate::membership::Membership;
use crate::message::{HeartbeatResponse, Message, RequestVoteResponse};
use crate::rng::Rng;
use crate::snapshot::Snapshots;
use crate::status::{PeerStatus, SnapshotTransfer, Status};
use crate::tracker::{ConfigLog, Tracker};
use crate::transfer::Transfer;
use crate::types::{
    Entry, EntryKind, HardState, Index, LogId, NodeId, RequestId, Role, Term, NO_NODE,
};

/// One Raft node: a deterministic state machine driven by [`RaftNode::step`].
///
/// It owns no I/O. The driver feeds it [`Input`]s and carries out the [`Output`]s, in order.
#[derive(Debug, Clone)]
pub struct RaftNode {
    pub(crate) cfg: Config,
    /// The configuration in force, progress of every peer (on a leader), votes.
    pub(crate) tracker: Tracker,
    pub(crate) term: Term,
    pub(crate) vote: NodeId,
    pub(crate) leader: NodeId,
    pub(crate) role: Role,
    pub(crate) log: RaftLog,
    pub(crate) election_elapsed: u32,
    pub(crate) heartbeat_elapsed: u32,
    pub(crate) randomized_timeout: u32,
    pub(crate) rng: Rng,
    pub(crate) dur: Durability,
    /// On a leader: accepted proposals not yet applied here.
    pub(crate) proposals: VecDeque<(LogId, RequestId)>,
    /// On a leader: bytes of entries above the commit index.
    pub(crate) uncommitted_bytes: u64,
    /// Snapshots taken, received and restored.
    pub(crate) snaps: Snapshots,
    /// On a leader: a leadership transfer under way.
    pub(crate) transfer: Option<Transfer>,
}

impl RaftNode {
    /// Builds a node from its configuration and the state recovered from storage. The node
    /// starts as a follower.
    pub fn new(cfg: Config, recovered: RecoveredState) -> Result<Self, RecoveryError> {
        cfg.validate()?;
        recovered.validate()?;
        let snaps = Snapshots::new(recovered.snapshot.clone());
        let snap = recovered.snapshot.unwrap_or_default();
        let hs = recovered.hard_state;
        let mut entries = recovered.entries;
        // A tail kept below the snapshot stays in the log (followers a little behind catch up
        // from it): its first entry becomes the floor, whose term is then known.
        let floor = match entries.first() {
            Some(first) if first.index <= snap.last_index => {
                let first = entries.remove(0);
                LogId {
                    term: first.term,
                    index: first.index,
                }
            }
            _ => snap.last_id(),
        };
        let configs = recovered_configs(&cfg, &snap, &entries)?;
        let log = RaftLog::recovered(
            floor,
            entries,
            hs.commit,
            snap.last_index,
            cfg.log_cache_bytes,
        );
        let tracker = Tracker::new(cfg.id, configs);
        let rng = Rng::new(cfg.seed ^ cfg.id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut node = RaftNode {
            tracker,
            term: hs.term,
            vote: hs.vote,
            leader: NO_NODE,
            role: Role::Follower,
            log,
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_timeout: cfg.election_timeout_ticks,
            rng,
            dur: Durability::new(hs),
            proposals: VecDeque::new(),
            uncommitted_bytes: 0,
            snaps,
            transfer: None,
            cfg,
        };
        node.reset_election_timer();
        Ok(node)
    }

    /// Feeds one input and returns the outputs to carry out, in order.
    pub fn step(&mut self, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        self.step_into(input, &mut out);
        out
    }

    /// Like [`RaftNode::step`], appending to a buffer the caller reuses (no allocation for the
    /// output list in hot loops).
    pub fn step_into(&mut self, input: Input, out: &mut Vec<Output>) {
        match input {
            Input::Tick => self.tick(out),
            Input::Receive { from, msg } => self.receive(from, msg, out),
            Input::Propose(p) => {
                self.propose(p, out);
                self.broadcast_append(false, out);
            }
            Input::ProposeBatch(ps) => {
                for p in ps {
                    self.propose(p, out);
                }
                self.broadcast_append(false, out);
            }
            Input::Persisted { seq } => self.on_persisted(seq, out),
            Input::Applied { index } => {
                self.log.applied_to(index);
                self.maybe_compact(out);
                self.on_applied_snapshot_ack(out);
            }
            Input::EntriesFetched { to, lo, entries } => {
                self.on_entries_fetched(to, lo, entries, out);
            }
            Input::SnapshotTaken { index } => self.on_snapshot_taken(index, out),
            Input::SnapshotFailed { index } => self.on_snapshot_failed(index, out),
            Input::TriggerSnapshot => self.request_snapshot(),
            read @ Input::SnapshotRead { .. } => self.on_snapshot_read(read, out),
            Input::ChangeMembership { request, steps } => {
                self.change_membership(request, &steps, out);
                self.broadcast_append(false, out);
            }
            Input::TransferLeadership { request, to } => self.transfer_leadership(request, to, out),
        }
        self.finish_step(out);
    }

    /// A snapshot of the node's state.
    pub fn status(&self) -> Status {
        let (membership_index, membership) = self.tracker.membership();
        Status {
            id: self.cfg.id,
            role: self.role,
            term: self.term,
            vote: self.vote,
            leader: self.leader_hint(),
            commit: self.log.committed(),
            applying: self.log.applying(),
            applied: self.log.applied(),
            last_index: self.log.last_index(),
            persisted: self.log.stable(),
            first_index: self.log.floor().index + 1,
            snapshot: self.snaps.status(),
            log_entries_in_memory: self.log.mem_usage().0 as u64,
            log_bytes_in_memory: self.log.mem_usage().1,
            membership: membership.clone(),
            membership_index,
            transfer: self.transfer.as_ref().map(Transfer::target),
            peers: self
                .tracker
                .progress()
                .iter()
                .map(|p| PeerStatus {
                    id: p.id(),
                    voter: self.tracker.is_voter(p.id()),
                    silent_ticks: p.silent_ticks(),
                    matched: p.matched(),
                    next: p.next(),
                    state: p.replication_state(),
                    inflight: p.inflight_count(),
                    recent_active: p.recent_active(),
                    snapshot: p.snapshot().map(|t| SnapshotTransfer {
                        index: t.snap.index,
                        acked: t.acked,
                        total: t.total,
                    }),
                })
                .collect(),
        }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.cfg.id
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The current term.
    pub fn term(&self) -> Term {
        self.term
    }

    /// The leader this node knows of.
    pub fn leader_hint(&self) -> Option<NodeId> {
        (self.leader != NO_NODE).then_some(self.leader)
    }

    /// Highest committed index.
    pub fn commit_index(&self) -> Index {
        self.log.committed()
    }

    /// Term and index of the last log entry.
    pub fn last_log_id(&self) -> LogId {
        self.log.last_id()
    }

    /// The entry at `index`, if the in-memory log holds it (entries that are applied and
    /// durable leave memory beyond the log cache; compacted ones are gone).
    pub fn entry(&self, index: Index) -> Option<&Entry> {
        self.log.get(index)
    }

    /// The term of the entry at `index`, if the log knows it: any index from the last
    /// compacted one (the snapshot boundary) to the last, whether the entry is in memory or not.
    pub fn log_term(&self, index: Index) -> Option<Term> {
        self.log.term(index)
    }

    /// The last entry the log no longer holds (its prefix is covered by a snapshot), or
    /// index 0 when nothing was compacted.
    pub fn log_floor(&self) -> LogId {
        self.log.floor()
    }

    /// The hard state as it stands in memory (it may not be durable yet).
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.committed(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The cluster's membership in force (the latest in the log) and the index of the entry
    /// or snapshot that holds it.
    pub fn membership(&self) -> (Index, &Arc<Membership>) {
        self.tracker.membership()
    }

    // ----- internals shared by the role modules -----

    pub(crate) fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        let base = u64::from(self.cfg.election_timeout_ticks);
        self.randomized_timeout = self.rng.range(base, 2 * base) as u32;
    }

    pub(crate) fn set_leader(&mut self, leader: NodeId, out: &mut Vec<Output>) {
        if self.leader != leader {
            self.leader = leader;
            self.abandon_receiving();
            out.push(Output::Event(Event::LeaderChanged {
                leader: self.leader_hint(),
                term: self.term,
            }));
        }
    }

    pub(crate) fn set_role(&mut self, role: Role, out: &mut Vec<Output>) {
        self.role = role;
        out.push(Output::Event(Event::RoleChanged {
            role,
            term: self.term,
        }));
    }

    /// Moves to a higher term (clearing the vote) and records it for persistence.
    pub(crate) fn set_term(&mut self, term: Term) {
        if term > self.term {
            self.term = term;
            self.vote = NO_NODE;
            self.dur.write_hard_state(self.hard_state());
        }
    }

    pub(crate) fn become_follower(&mut self, term: Term, leader: NodeId, out: &mut Vec<Output>) {
        let changed = term > self.term || self.role != Role::Follower;
        if self.role == Role::Leader {
            for (id, request) in self.proposals.drain(..) {
                out.push(Output::ProposalUnknown { request, id });
            }
            self.tracker.stop_leading();
            self.uncommitted_bytes = 0;
            self.transfer = None;
        }
        self.set_term(term);
        if changed {
            self.set_role(Role::Follower, out);
        }
        self.set_leader(leader, out);
        self.tracker.reset_votes();
        self.reset_election_timer();
    }

    /// Sends a message that depends on nothing durable.
    pub(crate) fn send(&mut self, to: NodeId, msg: Message, out: &mut Vec<Output>) {
        out.push(Output::Send { to, msg });
    }

    /// Sends a message once everything written so far is durable.
    pub(crate) fn send_when_durable(&mut self, to: NodeId, msg: Message, out: &mut Vec<Output>) {
        if let Some(Held::Send { to, msg }) = self.dur.hold(Held::Send { to, msg }) {
            out.push(Output::Send { to, msg });
        }
    }

    fn tick(&mut self, out: &mut Vec<Output>) {
        self.snapshot_tick();
        if self.role == Role::Leader {
            self.tick_leader(out);
            return;
        }
        self.election_elapsed = self.election_elapsed.saturating_add(1);
        if self.election_elapsed >= self.randomized_timeout {
            self.election_elapsed = 0;
            // Learners, removed nodes and nodes waiting to join never campaign.
            if self.tracker.i_vote() {
                self.campaign(self.cfg.pre_vote, false, out);
            } else {
                self.reset_election_timer();
            }
        }
    }

    fn tick_leader(&mut self, out: &mut Vec<Output>) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        for i in 0..self.tracker.len() {
            self.tracker.pr_mut(i).tick();
        }
        self.transfer_tick(out);
        if self.role != Role::Leader {
            // A removed leader's handover ran out: it stepped down.
            return;
        }
        if self.election_elapsed >= self.cfg.election_timeout_ticks {
            self.election_elapsed = 0;
            if self.cfg.check_quorum && !self.tracker.quorum_active() {
                out.push(Output::Event(Event::CheckQuorumFailed { term: self.term }));
                self.become_follower(self.term, NO_NODE, out);
                return;
            }
        }
        if self.heartbeat_elapsed >= self.cfg.heartbeat_interval_ticks {
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat(out);
        }
    }

    /// Whether a message from `from` is heard at all: from any node but this one and id 0.
    /// Requests are processed without consulting the configuration (thesis 4.1): a leader may
    /// lead a configuration this node has not seen yet (its log brings it), and a lagging voter
    /// must grant its vote to a candidate it does not know as a voter yet, or a cluster whose
    /// configuration moved on while that voter lagged could not elect anyone. A removed node
    /// cannot disrupt anyway: its log lacks the configuration that removed it, so it cannot
    /// win, and the leader lease keeps members that hear a leader from raising their terms.
    /// Only voters' answers count, in the tracker.
    fn hears(&self, from: NodeId) -> bool {
        from != self.cfg.id && from != NO_NODE
    }

    /// Applies the term rules common to every role, then dispatches by message kind.
    fn receive(&mut self, from: NodeId, msg: Message, out: &mut Vec<Output>) {
        if !self.hears(from) {
            out.push(Output::Event(Event::UnknownSender { from }));
            return;
        }
        let mterm = msg.term();
        if mterm > self.term {
            match &msg {
                Message::RequestVote(rv) => {
                    // The leader holds a lease: a node that heard from it within an election
                    // timeout ignores requests to replace it (pre-votes included), unless the
                    // leader itself handed over (a transfer). This is what keeps a removed node
                    // that missed its removal from raising the terms of members that still
                    // count it as a voter (thesis 4.2.3), with or without CheckQuorum.
                    let in_lease = self.leader != NO_NODE
                        && self.election_elapsed < self.cfg.election_timeout_ticks;
                    if in_lease && !rv.transfer {
                        return;
                    }
                    if !rv.pre_vote {
                        self.become_follower(mterm, NO_NODE, out);
                    }
                }
                Message::RequestVoteResponse(r) if r.pre_vote && r.granted => {}
                Message::AppendEntries(_)
                | Message::Heartbeat(_)
                | Message::InstallSnapshot(_)
                | Message::TimeoutNow(_) => {
                    self.become_follower(mterm, from, out);
                }
                _ => self.become_follower(mterm, NO_NODE, out),
            }
        } else if mterm < self.term {
            match &msg {
                Message::AppendEntries(_) | Message::Heartbeat(_) | Message::InstallSnapshot(_) => {
                    // Tell the stale leader about the newer term so it steps down (Figure 2).
                    // Always: a node whose term was raised by vote requests it cannot act on
                    // (a learner, or a voter of a configuration that moved on without it) never
                    // campaigns, so without this answer it and the stale leader would ignore
                    // each other for good.
                    let term = self.term;
                    self.send(
                        from,
                        Message::HeartbeatResponse(HeartbeatResponse { term }),
                        out,
                    );
                }
                Message::RequestVote(rv) if rv.pre_vote => {
                    let reply = RequestVoteResponse {
                        term: self.term,
                        pre_vote: true,
                        granted: false,
                    };
                    self.send(from, Message::RequestVoteResponse(reply), out);
                }
                _ => {}
            }
            return;
        }
        match msg {
            Message::RequestVote(rv) => self.handle_vote_request(from, rv, out),
            Message::RequestVoteResponse(r) => self.handle_vote_response(from, r, out),
            Message::AppendEntries(m) => self.handle_append(from, m, out),
            Message::AppendEntriesResponse(r) => self.handle_append_response(from, r, out),
            Message::Heartbeat(h) => self.handle_heartbeat(from, h, out),
            Message::HeartbeatResponse(_) => self.handle_heartbeat_response(from, out),
            Message::InstallSnapshot(m) => self.handle_install_snapshot(from, *m, out),
            Message::InstallSnapshotResponse(r) => {
                self.handle_install_snapshot_response(from, r, out)
            }
            Message::TimeoutNow(_) => self.handle_timeout_now(from, out),
        }
    }

    fn on_persisted(&mut self, seq: u64, out: &mut Vec<Output>) {
        let log = &mut self.log;
        let known = self.dur.persisted(seq, |id| log.stable_to(id));
        if !known {
            out.push(Output::Event(Event::InvalidInput {
                reason: "Persisted reports a write that was never requested",
            }));
            return;
        }
        while let Some(h) = self.dur.pop_released() {
            match h {
                Held::Send { to, msg } => out.push(Output::Send { to, msg }),
                Held::SelfVote(term) => {
                    if self.role == Role::Candidate && self.term == term {
                        let me = self.cfg.id;
                        self.record_vote(me, true, out);
                    }
                }
                Held::Restore(meta) => self.release_restore(meta, out),
            }
        }
        if self.role == Role::Leader {
            self.maybe_commit(out);
        }
    }

    /// Closes the step: hands out the assembled write and any newly applicable entries.
    fn finish_step(&mut self, out: &mut Vec<Output>) {
        if let Some(w) = self.dur.take_open(self.log.committed()) {
            out.push(Output::Persist(w));
        }
        self.maybe_apply(out);
        self.maybe_take_snapshot(out);
    }
}

/// The configurations of a recovered node: the snapshot's (or, without one, the initial one of
/// `Config`), then one per configuration entry after the snapshot.
fn recovered_configs(
    cfg: &Config,
    snap: &crate::types::SnapshotMeta,
    entries: &[Entry],
) -> Result<ConfigLog, RecoveryError> {
    let mut configs = if snap.membership.is_empty() {
        ConfigLog::new(snap.last_index, Arc::new(cfg.initial_membership()?), false)
    } else {
        ConfigLog::new(snap.last_index, snap.membership.clone(), true)
    };
    for e in entries {
        if e.kind == EntryKind::Config && e.index > snap.last_index {
            let m = decode_membership(&e.data).map_err(|reason| RecoveryError::BadConfigEntry {
                index: e.index,
                reason,
            })?;
            configs.push(e.index, Arc::new(m));
        }
    }
    Ok(configs)
}
