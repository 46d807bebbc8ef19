//! The consensus loop: the one task that owns the `RaftNode`.
//!
//! It waits for an event (a peer message, a client proposal, a durability report, an apply
//! report, a tick), takes every other event already queued, steps the core with each (client
//! proposals are grouped into one `ProposeBatch`), then routes all the outputs: messages to the
//! per-peer senders, writes to the storage thread, committed entries to the apply task.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use raft_proto_core::{
    Event, Input, Message, NodeId, Output, PersistWrite, Proposal, ProposeError, RaftNode,
    ReplicationState, RequestId, Role,
};
use tokio::sync::{mpsc, oneshot};

use super::apply_task::{ApplyMsg, Reply};
use super::storage_task::{StorageOp, StorageStats};
use crate::metrics::NodeMetrics;
use crate::protocol::{ClientResponse, NodeStatus, PeerReport};
use crate::transport::PeerLinks;

/// Everything the consensus loop reacts to.
pub(crate) enum CoreEvent {
    /// A message from a peer (already decoded and checked against the sender's certificate).
    Peer { from: NodeId, msg: Message },
    /// A client command to replicate.
    Propose { command: Bytes, reply: Reply },
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
    pub addrs: BTreeMap<NodeId, String>,
    pub tick: Duration,
    pub metrics: NodeMetrics,
    pub storage_stats: Arc<StorageStats>,
    pub started: Instant,
}

/// How the loop ended.
pub(crate) enum Exit {
    Shutdown,
    /// The storage thread failed (or stopped): nothing more can be made durable.
    StorageFailed(String),
    /// The apply task stopped (the state machine panicked): nothing more can be answered.
    ApplyFailed,
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
        };
        loop {
            tokio::select! {
                // Ticks first: a loop kept busy by events must still send heartbeats and run
                // its election and quorum checks (the interval fires at most once per tick).
                biased;
                _ = ticker.tick() => {
                    self.node.step_into(Input::Tick, &mut st.outputs);
                    st.ticks += 1;
                    if st.ticks.is_multiple_of(10) {
                        self.peer_gauges();
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
            CoreEvent::StorageFailed(reason) => {
                st.exit = Some(Exit::StorageFailed(reason));
                return;
            }
            CoreEvent::Shutdown => {
                st.exit = Some(Exit::Shutdown);
                return;
            }
            CoreEvent::Peer { from, msg } => Input::Receive { from, msg },
            CoreEvent::Persisted { seq } => Input::Persisted { seq },
            CoreEvent::Applied { index } => Input::Applied { index },
            CoreEvent::Fetched { to, lo, entries } => Input::EntriesFetched { to, lo, entries },
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
                Output::Persist(w) => self.to_storage(StorageOp::Write(w), st),
                Output::FetchEntries {
                    to,
                    lo,
                    hi,
                    max_bytes,
                } => self.to_storage(
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
                        st.exit.get_or_insert(Exit::ApplyFailed);
                    }
                }
                Output::Proposed { request, result } => {
                    let Some((reply, received)) = st.waiting.remove(&request) else {
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
                                st.exit.get_or_insert(Exit::ApplyFailed);
                            }
                        }
                        Err(ProposeError::NotLeader { leader_hint }) => {
                            let _ = reply.send(ClientResponse::NotLeader {
                                leader: leader_hint,
                                leader_addr: leader_hint.and_then(|l| self.addrs.get(&l).cloned()),
                            });
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
                Output::Event(ev) => self.event(ev, st),
            }
        }
        st.outputs = outputs;
        self.metrics
            .commit_index
            .set(self.node.commit_index() as f64);
        self.metrics
            .last_index
            .set(self.node.last_log_id().index as f64);
    }

    fn to_storage(&mut self, op: StorageOp, st: &mut State) {
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
                tracing::warn!(node, from, "message from a node outside the configuration");
            }
            Event::SnapshotSent {
                to,
                index,
                installed,
            } => {
                tracing::info!(node, peer = to, index, installed, "snapshot transfer ended");
            }
            Event::InvalidInput { reason } => {
                tracing::warn!(node, reason, "input ignored");
            }
        }
    }

    fn peer_gauges(&self) {
        if self.node.role() != Role::Leader {
            return;
        }
        let status = self.node.status();
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
            .addrs
            .iter()
            .filter(|(id, _)| **id != s.id)
            .map(|(id, addr)| PeerReport {
                id: *id,
                address: addr.clone(),
                matched: 0,
                next: 0,
                replicating: false,
                inflight: 0,
                active: false,
                connected: self.peers.connected(*id),
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
        }
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
