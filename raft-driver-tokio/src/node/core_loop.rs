//! The consensus loop: the one task that owns the `RaftNode`.
//!
//! It waits for an event (a peer message, a client proposal, a durability report, an apply
//! report, a tick), takes every other event already queued, steps the core with each (client
//! proposals are grouped into one `ProposeBatch`), then routes all the outputs: messages to the
//! per-peer senders, writes to the storage thread, committed entries to the apply task.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft_proto_core::{
    Event, Input, Message, NodeId, Output, Proposal, ProposeError, RaftNode, ReplicationState,
    RequestId, Role,
};
use tokio::sync::{mpsc, oneshot};

use super::apply_task::{ApplyMsg, Reply};
use super::reconfig::{self, Reconfig};
use super::snapshots::SnapshotInfo;
use super::storage_task::{StorageOp, StorageStats};
use crate::metrics::NodeMetrics;
use crate::protocol::{
    ClientResponse, NodeStatus, PeerReport, SnapshotDone, SnapshotReport, SnapshotSending,
};
use crate::transport::{AddressBook, PeerLinks};

/// Everything the consensus loop reacts to.
pub(crate) enum CoreEvent {
    /// A message from a peer (already decoded and checked against the sender's certificate).
    Peer { from: NodeId, msg: Message },
    /// A client command to replicate.
    Propose { command: Bytes, reply: Reply },
    /// An authenticated peer spoke from `addr`.
    PeerSeen {
        id: NodeId,
        addr: std::net::SocketAddr,
    },
    /// A client asks for a membership change.
    ChangeMembership {
        steps: Vec<crate::protocol::MemberChange>,
        reply: Reply,
    },
    /// A client asks for leadership to move.
    TransferLeader { to: Option<NodeId>, reply: Reply },
    /// Writes up to `seq` are durable.
    Persisted { seq: u64 },
    /// Entries up to `index` were applied.
    Applied { index: u64 },
    /// Entries read back from storage for a lagging follower.
    Fetched {
        to: NodeId,
        lo: u64,
        entries: Vec<raft_proto_core::Entry>,
    },
    /// A chunk of the latest snapshot read for follower `to`.
    SnapshotRead {
        to: NodeId,
        snapshot: raft_proto_core::LogId,
        offset: u64,
        data: Bytes,
        total: u64,
    },
    /// This node's snapshot at `index` is stored (`bytes` long).
    SnapshotTaken { index: u64, bytes: u64 },
    /// This node's snapshot at `index` could not be written.
    SnapshotFailed { index: u64 },
    /// A snapshot received from the leader is installed (`bytes` long).
    SnapshotInstalled { index: u64, bytes: u64 },
    /// Take a snapshot now; answer when it is stored.
    TriggerSnapshot {
        reply: oneshot::Sender<ClientResponse>,
    },
    /// The state machine failed (a restore from a snapshot): nothing more can be applied.
    StateMachineFailed(String),
    /// A status request.
    Status { reply: oneshot::Sender<NodeStatus> },
    /// The storage backend failed: the node cannot continue.
    StorageFailed(String),
    /// Stop the loop.
    Shutdown,
}

/// Most events taken per round before routing outputs.
const MAX_EVENTS_PER_ROUND: usize = 4096;

pub(crate) struct CoreLoop {
    pub node: RaftNode,
    pub cluster_id: u64,
    pub rx: mpsc::UnboundedReceiver<CoreEvent>,
    pub storage: mpsc::UnboundedSender<StorageOp>,
    pub apply: mpsc::UnboundedSender<ApplyMsg>,
    pub peers: PeerLinks,
    pub book: AddressBook,
    pub tick: Duration,
    pub metrics: NodeMetrics,
    pub storage_stats: Arc<StorageStats>,
    pub started: Instant,
    /// The snapshot the node recovered from: its last index and size.
    pub initial_snapshot: (u64, u64),
}

/// How the loop ended.
pub(crate) enum Exit {
    Shutdown,
    /// The storage thread failed (or stopped): nothing more can be made durable.
    StorageFailed(String),
    /// The apply task stopped (the state machine panicked or failed to restore a snapshot):
    /// nothing more can be applied or answered.
    ApplyFailed(String),
}

struct State {
    next_request: RequestId,
    waiting: HashMap<RequestId, (Reply, Instant)>,
    batch: Vec<Proposal>,
    outputs: Vec<Output>,
    leader_changes: u64,
    proposals: u64,
    ticks: u64,
    exit: Option<Exit>,
    snapshots: SnapshotInfo,
    reconfig: Reconfig,
}

impl CoreLoop {
    pub async fn run(mut self) -> Exit {
        let mut ticker = tokio::time::interval(self.tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut st = State {
            next_request: 1,
            waiting: HashMap::new(),
            batch: Vec::new(),
            outputs: Vec::new(),
            leader_changes: 0,
            proposals: 0,
            ticks: 0,
            exit: None,
            snapshots: SnapshotInfo::recovered(self.initial_snapshot.0, self.initial_snapshot.1),
            reconfig: Reconfig::new(
                self.tick * 2 * self.node.config().election_timeout_ticks.max(1),
            ),
        };
        self.membership_gauges();
        loop {
            tokio::select! {
                // Ticks first: a loop kept busy by events must still send heartbeats and run
                // its election and quorum checks (the interval fires at most once per tick).
                biased;
                _ = ticker.tick() => {
                    self.node.step_into(Input::Tick, &mut st.outputs);
                    st.ticks += 1;
                    if st.ticks.is_multiple_of(10) {
                        self.gauges();
                        // Links to nodes outside the configuration that went quiet close.
                        let quiet = 4 * u64::from(self.node.config().election_timeout_ticks);
                        if self.book.forget_quiet(st.ticks, quiet) {
                            self.peers.set_peers(&self.book.links());
                        }
                    }
                }
                ev = self.rx.recv() => {
                    let Some(ev) = ev else { return Exit::Shutdown };
                    self.handle(ev, &mut st);
                    let mut taken = 1;
                    while taken < MAX_EVENTS_PER_ROUND && st.exit.is_none() {
                        match self.rx.try_recv() {
                            Ok(ev) => self.handle(ev, &mut st),
                            Err(_) => break,
                        }
                        taken += 1;
                    }
                    self.flush_proposals(&mut st);
                }
            }
            self.route(&mut st);
            if let Some(exit) = st.exit.take() {
                // Clients still waiting for a placement get a clear refusal.
                for (_, (reply, _)) in st.waiting.drain() {
                    let _ = reply.send(ClientResponse::Unknown {
                        reason: "the node is shutting down".into(),
                    });
                }
                st.reconfig.shutdown();
                return exit;
            }
        }
    }

    fn handle(&mut self, ev: CoreEvent, st: &mut State) {
        let input = match ev {
            CoreEvent::Propose { command, reply } => {
                let request = st.next_request;
                st.next_request += 1;
                st.waiting.insert(request, (reply, Instant::now()));
                st.batch.push(Proposal {
                    request,
                    data: command,
                });
                st.proposals += 1;
                self.metrics.proposals.increment(1);
                return;
            }
            CoreEvent::Status { reply } => {
                let _ = reply.send(self.status(st));
                return;
            }
            CoreEvent::PeerSeen { id, addr } => {
                if self.book.learn(id, addr) {
                    tracing::info!(node = self.node.id(), peer = id, %addr, "peer heard from");
                    self.peers.set_peers(&self.book.links());
                }
                return;
            }
            CoreEvent::ChangeMembership { steps, reply } => {
                let steps = match reconfig::core_steps(steps) {
                    Ok(steps) => steps,
                    Err(reason) => {
                        let _ = reply.send(ClientResponse::Rejected { reason });
                        return;
                    }
                };
                let request = st.next_request;
                st.next_request += 1;
                st.reconfig.asked_change(request, reply);
                Input::ChangeMembership { request, steps }
            }
            CoreEvent::TransferLeader { to, reply } => {
                let request = st.next_request;
                st.next_request += 1;
                st.reconfig.asked_transfer(request, reply);
                Input::TransferLeadership { request, to }
            }
            CoreEvent::StorageFailed(reason) => {
                st.exit = Some(Exit::StorageFailed(reason));
                return;
            }
            CoreEvent::Shutdown => {
                st.exit = Some(Exit::Shutdown);
                return;
            }
            CoreEvent::Peer { from, msg } => {
                if self.book.heard_from(from, st.ticks) {
                    self.peers.set_peers(&self.book.links());
                }
                Input::Receive { from, msg }
            }
            CoreEvent::Persisted { seq } => Input::Persisted { seq },
            CoreEvent::Applied { index } => Input::Applied { index },
            CoreEvent::Fetched { to, lo, entries } => Input::EntriesFetched { to, lo, entries },
            CoreEvent::SnapshotRead {
                to,
                snapshot,
                offset,
                data,
                total,
            } => Input::SnapshotRead {
                to,
                snapshot,
                offset,
                data,
                total,
            },
            CoreEvent::SnapshotTaken { index, bytes } => {
                st.snapshots.stored(index, bytes, true);
                self.metrics.snapshot_index.set(index as f64);
                self.metrics.snapshot_bytes.set(bytes as f64);
                let done = self.snapshot_done(st, true);
                st.snapshots.answer_waiters(done);
                Input::SnapshotTaken { index }
            }
            CoreEvent::SnapshotFailed { index } => {
                st.snapshots.answer_waiters(ClientResponse::Rejected {
                    reason: format!("the snapshot at index {index} could not be written"),
                });
                Input::SnapshotFailed { index }
            }
            CoreEvent::SnapshotInstalled { index, bytes } => {
                st.snapshots.stored(index, bytes, false);
                self.metrics.snapshot_index.set(index as f64);
                self.metrics.snapshot_bytes.set(bytes as f64);
                return;
            }
            CoreEvent::TriggerSnapshot { reply } => {
                self.flush_proposals(st);
                self.node.step_into(Input::TriggerSnapshot, &mut st.outputs);
                st.snapshots.wait(reply);
                return;
            }
            CoreEvent::StateMachineFailed(reason) => {
                st.exit = Some(Exit::ApplyFailed(reason));
                return;
            }
        };
        // Proposals queued before this input go in first, so the core sees events in order.
        self.flush_proposals(st);
        self.node.step_into(input, &mut st.outputs);
    }

    fn flush_proposals(&mut self, st: &mut State) {
        match st.batch.len() {
            0 => {}
            1 => {
                if let Some(p) = st.batch.pop() {
                    self.node.step_into(Input::Propose(p), &mut st.outputs);
                }
            }
            _ => {
                let batch = std::mem::take(&mut st.batch);
                self.node
                    .step_into(Input::ProposeBatch(batch), &mut st.outputs);
            }
        }
    }

    fn route(&mut self, st: &mut State) {
        let mut outputs = std::mem::take(&mut st.outputs);
        for out in outputs.drain(..) {
            match out {
                Output::Send { to, msg } => self.peers.send(to, msg, &self.metrics),
                Output::MembershipChanged { index, membership } => {
                    tracing::info!(node = self.node.id(), index, %membership, "configuration in force");
                    self.book.set_membership(&membership);
                    st.reconfig.membership_changed(index, &membership);
                    self.peers.set_peers(&self.book.links());
                    self.metrics.membership_changes.increment(1);
                    self.membership_gauges();
                }
                Output::Transferring { request, result } => {
                    if let Ok(to) = result {
                        if to != self.node.id() {
                            self.metrics.transfers.increment(1);
                            tracing::info!(node = self.node.id(), to, "transferring leadership");
                        }
                    }
                    st.reconfig
                        .transferring(&self.node, request, result, &self.book);
                }
                Output::Persist(w) => self.send_storage(StorageOp::Write(w), st),
                Output::FetchEntries {
                    to,
                    lo,
                    hi,
                    max_bytes,
                } => self.send_storage(
                    StorageOp::Fetch {
                        to,
                        lo,
                        hi,
                        max_bytes,
                    },
                    st,
                ),
                Output::Apply { entries } => {
                    if self.apply.send(ApplyMsg::Entries(entries)).is_err() {
                        st.exit.get_or_insert(Exit::ApplyFailed(
                            "the state machine task stopped".into(),
                        ));
                    }
                }
                Output::Proposed { request, result } => {
                    let Some((reply, received)) = st.waiting.remove(&request) else {
                        st.reconfig
                            .proposed(&self.node, request, &result, &self.book);
                        continue;
                    };
                    match result {
                        Ok(id) => {
                            let register = ApplyMsg::Register {
                                id,
                                reply,
                                received,
                            };
                            if self.apply.send(register).is_err() {
                                st.exit.get_or_insert(Exit::ApplyFailed(
                                    "the state machine task stopped".into(),
                                ));
                            }
                        }
                        Err(ProposeError::NotLeader { leader_hint }) => {
                            let _ = reply.send(reconfig::not_leader(leader_hint, &self.book));
                        }
                        // Sent on to the node taking over: by the time the client gets
                        // there it leads, or soon will.
                        Err(ProposeError::TransferInProgress { to }) => {
                            let _ = reply.send(reconfig::not_leader(Some(to), &self.book));
                        }
                        Err(e) => {
                            self.metrics.proposals_rejected.increment(1);
                            let _ = reply.send(ClientResponse::Rejected {
                                reason: e.to_string(),
                            });
                        }
                    }
                }
                Output::ProposalUnknown { id, .. } => {
                    let _ = self.apply.send(ApplyMsg::Unknown { id });
                }
                Output::TakeSnapshot { meta } => {
                    st.snapshots.taking = Some(meta.last_index);
                    if self.apply.send(ApplyMsg::TakeSnapshot { meta }).is_err() {
                        st.exit.get_or_insert(Exit::ApplyFailed(
                            "the state machine task stopped".into(),
                        ));
                    }
                }
                Output::RestoreSnapshot { meta } => {
                    if self.apply.send(ApplyMsg::Restore { meta }).is_err() {
                        st.exit.get_or_insert(Exit::ApplyFailed(
                            "the state machine task stopped".into(),
                        ));
                    }
                }
                Output::Compact { through } => {
                    self.send_storage(StorageOp::Compact { through }, st)
                }
                Output::ReadSnapshot {
                    to,
                    offset,
                    max_len,
                    ..
                } => self.send_storage(
                    StorageOp::ReadSnapshot {
                        to,
                        offset,
                        max_len,
                    },
                    st,
                ),
                Output::SnapshotChunk { meta, offset, data } => {
                    self.send_storage(StorageOp::ReceiveChunk { meta, offset, data }, st)
                }
                Output::InstallSnapshot { seq, meta } => {
                    self.send_storage(StorageOp::Install { seq, meta }, st)
                }
                Output::Event(ev) => self.event(ev, st),
            }
        }
        if !st.snapshots.waiters.is_empty() {
            // A request for a snapshot with nothing to take (or that cannot be taken now) is
            // answered at once; one being taken is answered when it is stored.
            let s = self.node.status().snapshot;
            if s.taking.is_none() {
                let answer = match s.receiving {
                    Some((index, _, _)) => ClientResponse::Rejected {
                        reason: format!(
                            "this node is receiving snapshot {index} from the leader; try again later"
                        ),
                    },
                    None => self.snapshot_done(st, false),
                };
                st.snapshots.answer_waiters(answer);
            }
        }
        st.outputs = outputs;
        st.reconfig.check(&self.node);
        self.metrics
            .commit_index
            .set(self.node.commit_index() as f64);
        self.metrics
            .last_index
            .set(self.node.last_log_id().index as f64);
    }

    fn send_storage(&mut self, op: StorageOp, st: &mut State) {
        // The storage thread stops only after this loop, unless it failed.
        if self.storage.send(op).is_err() && st.exit.is_none() {
            st.exit = Some(Exit::StorageFailed("the storage thread stopped".into()));
        }
    }

    fn event(&mut self, ev: Event, st: &mut State) {
        let node = self.node.id();
        match ev {
            Event::RoleChanged { role, term } => {
                tracing::info!(node, term, %role, "role changed");
                self.metrics.term.set(term as f64);
                self.metrics.role.set(role_number(role));
                self.metrics
                    .is_leader
                    .set(if role == Role::Leader { 1.0 } else { 0.0 });
            }
            Event::LeaderChanged { leader, term } => {
                if self.book.set_leader(leader) {
                    self.peers.set_peers(&self.book.links());
                }
                st.leader_changes += 1;
                self.metrics.leader_changes.increment(1);
                self.metrics.term.set(term as f64);
                match leader {
                    Some(leader) => tracing::info!(node, term, leader, "leader known"),
                    None => tracing::info!(node, term, "no leader known"),
                }
            }
            Event::CheckQuorumFailed { term } => {
                tracing::warn!(node, term, "lost contact with a quorum; stepping down");
            }
            Event::UnknownSender { from } => {
                tracing::warn!(
                    node,
                    from,
                    "message claiming to come from node 0 or this node dropped"
                );
            }
            Event::SnapshotSent {
                to,
                index,
                installed,
            } => {
                if installed {
                    self.metrics.snapshots_sent.increment(1);
                    st.snapshots.sent += 1;
                }
                tracing::info!(node, peer = to, index, installed, "snapshot transfer ended");
            }
            Event::InvalidInput { reason } => {
                tracing::warn!(node, reason, "input ignored");
            }
            Event::TransferAborted { to, term } => {
                tracing::warn!(node, term, to, "leadership transfer abandoned");
                self.metrics.transfers_aborted.increment(1);
                st.reconfig.transfer_aborted(&self.node, to);
            }
            Event::RemovedFromConfiguration { term, successor } => {
                tracing::info!(
                    node,
                    term,
                    ?successor,
                    "removed from the configuration; stepped down"
                );
                self.book.set_successor(successor);
            }
        }
    }

    fn membership_gauges(&self) {
        let (index, m) = self.node.membership();
        self.metrics.voters.set(m.all_voters().len() as f64);
        self.metrics.learners.set(m.learners().len() as f64);
        self.metrics.joint.set(if m.is_joint() { 1.0 } else { 0.0 });
        self.metrics.membership_index.set(index as f64);
    }

    fn gauges(&self) {
        let status = self.node.status();
        let kept = (status.last_index + 1).saturating_sub(status.first_index);
        self.metrics.log_entries_kept.set(kept as f64);
        self.metrics
            .log_bytes_in_memory
            .set(status.log_bytes_in_memory as f64);
        let snap = status.snapshot.latest.as_ref().map_or(0, |m| m.last_index);
        self.metrics.snapshot_index.set(snap as f64);
        if status.role != Role::Leader {
            return;
        }
        for p in &status.peers {
            if p.id != status.id {
                self.metrics
                    .peer(p.id, p.matched, status.last_index.saturating_sub(p.matched));
            }
        }
    }

    fn status(&self, st: &State) -> NodeStatus {
        let s = self.node.status();
        let leading = s.role == Role::Leader;
        let mut peers: Vec<PeerReport> = self
            .peers
            .peers()
            .map(|(id, addr)| PeerReport {
                id,
                address: addr.to_string(),
                matched: 0,
                next: 0,
                replicating: false,
                inflight: 0,
                active: false,
                connected: self.peers.connected(id),
                snapshot: None,
            })
            .collect();
        if leading {
            for p in &s.peers {
                if let Some(r) = peers.iter_mut().find(|r| r.id == p.id) {
                    r.matched = p.matched;
                    r.next = p.next;
                    r.replicating = p.state == ReplicationState::Replicate;
                    r.inflight = u32::try_from(p.inflight).unwrap_or(u32::MAX);
                    r.active = p.recent_active;
                    r.snapshot = p.snapshot.map(|t| SnapshotSending {
                        index: t.index,
                        acked: t.acked,
                        total: t.total.unwrap_or(0),
                    });
                }
            }
        }
        let stats = &self.storage_stats;
        NodeStatus {
            id: s.id,
            cluster_id: self.cluster_id,
            role: s.role,
            term: s.term,
            vote: s.vote,
            leader: s.leader,
            commit: s.commit,
            applied: s.applied,
            last_index: s.last_index,
            persisted: s.persisted,
            peers,
            leader_changes: st.leader_changes,
            proposals: st.proposals,
            storage_batches: stats.batches.load(Ordering::Relaxed),
            storage_writes: stats.writes.load(Ordering::Relaxed),
            storage_entries: stats.entries.load(Ordering::Relaxed),
            storage_micros: stats.micros.load(Ordering::Relaxed),
            bytes_sent: self.peers.bytes_sent(),
            bytes_received: self.peers.bytes_received(),
            uptime_ms: self.started.elapsed().as_millis() as u64,
            snapshot: SnapshotReport {
                index: st.snapshots.index,
                term: s.snapshot.latest.as_ref().map_or(0, |m| m.last_term),
                bytes: st.snapshots.bytes,
                age_ms: st.snapshots.at.elapsed().as_millis() as u64,
                taking: s.snapshot.taking,
                receiving: s
                    .snapshot
                    .receiving
                    .map(|(index, acked, total)| SnapshotSending {
                        index,
                        acked,
                        total,
                    }),
                first_index: s.first_index,
                log_entries_in_memory: s.log_entries_in_memory,
                log_bytes_in_memory: s.log_bytes_in_memory,
                taken: st.snapshots.taken,
                sent: st.snapshots.sent,
                installed: stats.snapshots_installed.load(Ordering::Relaxed),
            },
            membership: reconfig::report(&self.node),
            transfer: s.transfer,
        }
    }

    /// The answer to a snapshot request: the latest snapshot (`new`: taken for it).
    fn snapshot_done(&self, st: &State, new: bool) -> ClientResponse {
        let term = self
            .node
            .status()
            .snapshot
            .latest
            .map_or(0, |m| m.last_term);
        ClientResponse::Snapshot(SnapshotDone {
            index: st.snapshots.index,
            term,
            bytes: st.snapshots.bytes,
            new,
        })
    }
}

fn role_number(role: Role) -> f64 {
    match role {
        Role::Follower => 0.0,
        Role::PreCandidate => 1.0,
        Role::Candidate => 2.0,
        Role::Leader => 3.0,
    }
}
