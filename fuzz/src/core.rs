//! `core_step`: a 3-node in-memory cluster of `RaftNode`s driven by fuzz-chosen operations.
//!
//! The network is a queue that may deliver any message (reordering), drop or duplicate one;
//! each node has a disk that holds what was made durable plus writes requested but not yet
//! durable; a crash loses the latter and rebuilds the node from the former. Operations can also
//! inject a message with arbitrary fields from an arbitrary sender.
//!
//! Checked after every operation:
//! - at most one leader per term (over the whole run);
//! - committed entries never change: the first node to commit index `i` fixes the ground truth
//!   for `i`, and every node's entries up to its commit index must match it;
//! - every applied entry is the next index, is committed, and matches the ground truth;
//! - per node: the committed prefix never changes and the commit index never goes back
//!   (across crashes too, the durable commit being what counts).
//!
//! Raft does not tolerate forged messages from members (a forged vote or AppendEntries from a
//! member legitimately breaks cluster-wide safety). So once a message is injected *as if from a
//! member*, the run is "tainted": cluster-wide checks stop, while the no-panic property and the
//! per-node checks (which must hold on any input) continue. Injections from non-members (ids 0,
//! 4, 99, u64::MAX) never taint: the core must ignore them.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use raft_proto_core::message::{
    AppendEntries, AppendEntriesResponse, AppendResult, Heartbeat, HeartbeatResponse, RequestVote,
    RequestVoteResponse,
};
use raft_proto_core::{
    Config, Entry, EntryKind, HardState, Index, Input as RaftInput, LogId, Message, NodeId,
    Output as RaftOutput, PersistWrite, Proposal, RaftNode, RecoveredState, Role, Term,
};

use crate::{Input, Output};

/// Node ids of the cluster.
pub const IDS: [NodeId; 3] = [1, 2, 3];
/// Senders an injected message can claim (members and non-members).
pub const SENDERS: [NodeId; 7] = [0, 1, 2, 3, 4, 99, u64::MAX];
/// Most operations read from one input.
pub const MAX_OPS: usize = 1000;
/// Most messages queued in the network; further sends are dropped (a lossy network).
pub const MAX_QUEUED: usize = 400;

/// One operation. The byte encoding is `opcode % 12` followed by the arguments.
#[derive(Debug, Clone)]
pub enum Op {
    /// Deliver queued message `i % len`.
    Deliver(u8),
    /// Drop queued message `i % len`.
    Drop(u8),
    /// Duplicate queued message `i % len` (the copy goes to the back).
    Duplicate(u8),
    /// One tick on a node.
    Tick(u8),
    /// `n % 32 + 1` ticks on a node.
    TickMany(u8, u8),
    /// A proposal with this payload to a node.
    Propose(u8, Vec<u8>),
    /// Make all of a node's pending writes durable and report it.
    PersistAll(u8),
    /// Make a node's oldest pending write durable and report it.
    PersistOne(u8),
    /// Crash a node and restart it from its durable writes.
    Crash(u8),
    /// Tell a node its applied entries were applied.
    AckApplied(u8),
    /// Inject a message from `SENDERS[from % 7]` to node `to`.
    Inject { from: u8, to: u8, msg: Message },
    /// Deliver up to 64 messages in queue order.
    DeliverMany,
}

fn node_of(b: u8) -> NodeId {
    IDS[b as usize % IDS.len()]
}

fn log_id(inp: &mut Input) -> LogId {
    LogId {
        term: inp.num(),
        index: inp.num(),
    }
}

fn read_message(inp: &mut Input) -> Message {
    match inp.u8() % 6 {
        0 => Message::RequestVote(RequestVote {
            term: inp.num(),
            pre_vote: inp.u8() & 1 == 1,
            last_log: log_id(inp),
        }),
        1 => Message::RequestVoteResponse(RequestVoteResponse {
            term: inp.num(),
            pre_vote: inp.u8() & 1 == 1,
            granted: inp.u8() & 1 == 1,
        }),
        2 => {
            let term = inp.num();
            let prev = log_id(inp);
            let commit = inp.num();
            let n = inp.u8() % 5;
            let mut entries = Vec::new();
            for i in 0..n {
                let kind = if inp.u8() & 1 == 0 {
                    EntryKind::Normal
                } else {
                    EntryKind::Noop
                };
                // Usually consecutive after prev (as a real leader sends); sometimes not.
                let index = match inp.u8() {
                    0xFF => inp.num(),
                    _ => prev.index.wrapping_add(1 + u64::from(i)),
                };
                entries.push(Entry {
                    term: inp.num(),
                    index,
                    kind,
                    data: Bytes::from(inp.bytes(8)),
                });
            }
            Message::AppendEntries(AppendEntries {
                term,
                prev,
                entries,
                commit,
            })
        }
        3 => Message::AppendEntriesResponse(AppendEntriesResponse {
            term: inp.num(),
            result: if inp.u8() & 1 == 0 {
                AppendResult::Success {
                    match_index: inp.num(),
                }
            } else {
                AppendResult::Reject {
                    rejected: inp.num(),
                    hint: log_id(inp),
                }
            },
        }),
        4 => Message::Heartbeat(Heartbeat {
            term: inp.num(),
            commit: inp.num(),
        }),
        _ => Message::HeartbeatResponse(HeartbeatResponse { term: inp.num() }),
    }
}

impl Op {
    /// Reads one operation.
    pub fn read(inp: &mut Input) -> Op {
        match inp.u8() % 12 {
            0 => Op::Deliver(inp.u8()),
            1 => Op::Drop(inp.u8()),
            2 => Op::Duplicate(inp.u8()),
            3 => Op::Tick(inp.u8()),
            4 => Op::TickMany(inp.u8(), inp.u8()),
            5 => Op::Propose(inp.u8(), inp.bytes(16)),
            6 => Op::PersistAll(inp.u8()),
            7 => Op::PersistOne(inp.u8()),
            8 => Op::Crash(inp.u8()),
            9 => Op::AckApplied(inp.u8()),
            10 => Op::Inject {
                from: inp.u8(),
                to: inp.u8(),
                msg: read_message(inp),
            },
            _ => Op::DeliverMany,
        }
    }

    /// Writes the operation in the encoding [`Op::read`] reads (for the corpus generator).
    pub fn write(&self, out: &mut Output) {
        match self {
            Op::Deliver(i) => out.u8(0).u8(*i),
            Op::Drop(i) => out.u8(1).u8(*i),
            Op::Duplicate(i) => out.u8(2).u8(*i),
            Op::Tick(n) => out.u8(3).u8(*n),
            Op::TickMany(n, k) => out.u8(4).u8(*n).u8(*k),
            Op::Propose(n, d) => out.u8(5).u8(*n).bytes(d),
            Op::PersistAll(n) => out.u8(6).u8(*n),
            Op::PersistOne(n) => out.u8(7).u8(*n),
            Op::Crash(n) => out.u8(8).u8(*n),
            Op::AckApplied(n) => out.u8(9).u8(*n),
            Op::Inject { from, to, msg } => {
                out.u8(10).u8(*from).u8(*to);
                match msg {
                    Message::RequestVote(m) => out
                        .u8(0)
                        .num(m.term)
                        .u8(m.pre_vote as u8)
                        .num(m.last_log.term)
                        .num(m.last_log.index),
                    Message::Heartbeat(m) => out.u8(4).num(m.term).num(m.commit),
                    Message::HeartbeatResponse(m) => out.u8(5).num(m.term),
                    Message::AppendEntries(m) => {
                        out.u8(2)
                            .num(m.term)
                            .num(m.prev.term)
                            .num(m.prev.index)
                            .num(m.commit)
                            .u8(m.entries.len() as u8);
                        for e in &m.entries {
                            out.u8((e.kind == EntryKind::Noop) as u8)
                                .u8(0)
                                .num(e.term)
                                .bytes(&e.data);
                        }
                        out
                    }
                    Message::RequestVoteResponse(m) => out
                        .u8(1)
                        .num(m.term)
                        .u8(m.pre_vote as u8)
                        .u8(m.granted as u8),
                    Message::AppendEntriesResponse(m) => match m.result {
                        AppendResult::Success { match_index } => {
                            out.u8(3).num(m.term).u8(0).num(match_index)
                        }
                        AppendResult::Reject { rejected, hint } => out
                            .u8(3)
                            .num(m.term)
                            .u8(1)
                            .num(rejected)
                            .num(hint.term)
                            .num(hint.index),
                    },
                }
            }
            Op::DeliverMany => out.u8(11),
        };
    }
}

#[derive(Default, Clone)]
struct Disk {
    hard_state: HardState,
    entries: Vec<Entry>,
    pending: VecDeque<PersistWrite>,
}

impl Disk {
    fn apply(&mut self, w: &PersistWrite) {
        if let Some(t) = w.truncate_from {
            self.entries.retain(|e| e.index < t);
        }
        self.entries.extend(w.entries.iter().cloned());
        if let Some(hs) = w.hard_state {
            self.hard_state = hs;
        }
    }
}

/// The cluster and the safety bookkeeping.
pub struct Cluster {
    nodes: BTreeMap<NodeId, RaftNode>,
    disks: BTreeMap<NodeId, Disk>,
    net: VecDeque<(NodeId, NodeId, Message)>,
    /// Last applied index per node (reset by a crash: the node re-applies from the start).
    applied: BTreeMap<NodeId, Index>,
    /// Entries applied during the current operation, checked after it.
    applies: Vec<(NodeId, Entry)>,
    /// Ground truth: the first committed value seen for each index.
    committed: BTreeMap<Index, (Term, EntryKind, Bytes)>,
    /// Per node: committed prefix as that node saw it, and its highest durable commit.
    local: BTreeMap<NodeId, BTreeMap<Index, (Term, EntryKind, Bytes)>>,
    /// The leader of each term seen.
    leaders: BTreeMap<Term, NodeId>,
    /// A message was forged as if from a member: cluster-wide checks are off.
    tainted: bool,
    next_request: u64,
}

fn config(id: NodeId) -> Config {
    let mut c = Config::new(id, IDS.to_vec());
    c.election_timeout_ticks = 4;
    c.heartbeat_interval_ticks = 1;
    c.max_message_bytes = 64;
    c.max_inflight_messages = 4;
    c.max_apply_bytes = 64;
    c.seed = 0xF022 + id;
    c
}

fn key(e: &Entry) -> (Term, EntryKind, Bytes) {
    (e.term, e.kind, e.data.clone())
}

impl Cluster {
    /// Three fresh nodes.
    pub fn new() -> Self {
        let mut cl = Cluster {
            nodes: BTreeMap::new(),
            disks: BTreeMap::new(),
            net: VecDeque::new(),
            applied: BTreeMap::new(),
            applies: Vec::new(),
            committed: BTreeMap::new(),
            local: BTreeMap::new(),
            leaders: BTreeMap::new(),
            tainted: false,
            next_request: 1,
        };
        for id in IDS {
            cl.disks.insert(id, Disk::default());
            cl.restart(id);
        }
        cl
    }

    fn restart(&mut self, id: NodeId) {
        let disk = self.disks.get_mut(&id).expect("disk");
        disk.pending.clear();
        let rec = RecoveredState {
            hard_state: disk.hard_state,
            snapshot: None,
            entries: disk.entries.clone(),
        };
        let node =
            RaftNode::new(config(id), rec).expect("a node must restart from what it made durable");
        // What the node committed beyond its durable commit index may have been lost with the
        // crash; without forged messages it was committed cluster-wide and the cluster-wide
        // check still covers it.
        let durable_commit = disk.hard_state.commit;
        if let Some(local) = self.local.get_mut(&id) {
            local.retain(|&i, _| i <= durable_commit);
        }
        self.nodes.insert(id, node);
        self.applied.insert(id, 0);
    }

    fn step(&mut self, id: NodeId, input: RaftInput) {
        let outs = self.nodes.get_mut(&id).expect("node").step(input);
        for o in outs {
            match o {
                RaftOutput::Send { to, msg } if self.net.len() < MAX_QUEUED => {
                    self.net.push_back((id, to, msg));
                }
                RaftOutput::Persist(w) => {
                    let disk = self.disks.get_mut(&id).expect("disk");
                    if let Some(last) = disk.pending.back() {
                        assert!(w.seq > last.seq, "persist seqs must increase");
                    }
                    disk.pending.push_back(w);
                }
                RaftOutput::Apply { entries } => {
                    self.applies.extend(entries.into_iter().map(|e| (id, e)));
                }
                _ => {}
            }
        }
    }

    fn persist_through(&mut self, id: NodeId, seq: u64) {
        let disk = self.disks.get_mut(&id).expect("disk");
        while disk.pending.front().is_some_and(|w| w.seq <= seq) {
            let w = disk.pending.pop_front().expect("front");
            disk.apply(&w);
        }
        self.step(id, RaftInput::Persisted { seq });
    }

    fn deliver(&mut self, i: usize) {
        if let Some((from, to, msg)) = self.net.remove(i) {
            if self.nodes.contains_key(&to) {
                self.step(to, RaftInput::Receive { from, msg });
            }
        }
    }

    /// Carries out one operation.
    pub fn apply(&mut self, op: Op) {
        let len = self.net.len();
        match op {
            Op::Deliver(i) if len > 0 => self.deliver(i as usize % len),
            Op::Drop(i) if len > 0 => {
                self.net.remove(i as usize % len);
            }
            Op::Duplicate(i) if len > 0 && len < MAX_QUEUED => {
                let m = self.net[i as usize % len].clone();
                self.net.push_back(m);
            }
            Op::Deliver(_) | Op::Drop(_) | Op::Duplicate(_) => {}
            Op::Tick(n) => self.step(node_of(n), RaftInput::Tick),
            Op::TickMany(n, k) => {
                for _ in 0..=(k % 32) {
                    self.step(node_of(n), RaftInput::Tick);
                }
            }
            Op::Propose(n, data) => {
                let request = self.next_request;
                self.next_request += 1;
                let p = Proposal {
                    request,
                    data: Bytes::from(data),
                };
                self.step(node_of(n), RaftInput::Propose(p));
            }
            Op::PersistAll(n) => {
                let id = node_of(n);
                if let Some(seq) = self.disks[&id].pending.back().map(|w| w.seq) {
                    self.persist_through(id, seq);
                }
            }
            Op::PersistOne(n) => {
                let id = node_of(n);
                if let Some(seq) = self.disks[&id].pending.front().map(|w| w.seq) {
                    self.persist_through(id, seq);
                }
            }
            Op::Crash(n) => self.restart(node_of(n)),
            Op::AckApplied(n) => {
                let id = node_of(n);
                let index = self.applied[&id];
                self.step(id, RaftInput::Applied { index });
            }
            Op::Inject { from, to, msg } => {
                let from = SENDERS[from as usize % SENDERS.len()];
                if IDS.contains(&from) {
                    self.tainted = true;
                }
                self.step(node_of(to), RaftInput::Receive { from, msg });
            }
            Op::DeliverMany => {
                for _ in 0..64 {
                    if self.net.is_empty() {
                        break;
                    }
                    self.deliver(0);
                }
            }
        }
        self.check();
    }

    /// The safety checks (see the module documentation).
    pub fn check(&mut self) {
        for (&id, node) in &self.nodes {
            let commit = node.commit_index();
            assert!(
                commit <= node.last_log_id().index,
                "node {id}: commit {commit} beyond last log index {}",
                node.last_log_id().index
            );
            if node.role() == Role::Leader && !self.tainted {
                let prev = *self.leaders.entry(node.term()).or_insert(id);
                assert_eq!(
                    prev,
                    id,
                    "two leaders in term {}: {prev} and {id}",
                    node.term()
                );
            }
            let local = self.local.entry(id).or_default();
            for i in 1..=commit {
                let e = node
                    .entry(i)
                    .unwrap_or_else(|| panic!("node {id}: committed entry {i} missing"));
                assert_eq!(e.index, i, "node {id}: entry at {i} has index {}", e.index);
                let k = key(e);
                let seen = local.entry(i).or_insert_with(|| k.clone());
                assert_eq!(*seen, k, "node {id}: its committed entry {i} changed");
                if !self.tainted {
                    let truth = self.committed.entry(i).or_insert_with(|| k.clone());
                    assert_eq!(
                        *truth, k,
                        "node {id}: committed entry {i} differs from the first committed value"
                    );
                }
            }
        }
        for (id, e) in std::mem::take(&mut self.applies) {
            let last = self.applied.get_mut(&id).expect("applied");
            assert_eq!(e.index, *last + 1, "node {id}: applied out of order");
            *last = e.index;
            let node = &self.nodes[&id];
            assert!(
                e.index <= node.commit_index(),
                "node {id}: applied {} above commit {}",
                e.index,
                node.commit_index()
            );
            let k = key(&e);
            if let Some(seen) = self.local.get(&id).and_then(|l| l.get(&e.index)) {
                assert_eq!(
                    *seen, k,
                    "node {id}: applied entry {} is not the committed one",
                    e.index
                );
            }
            if !self.tainted {
                let truth = self.committed.entry(e.index).or_insert_with(|| k.clone());
                assert_eq!(
                    *truth, k,
                    "node {id}: applied entry {} differs from ground truth",
                    e.index
                );
            }
        }
    }
}

impl Default for Cluster {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs the operations `data` encodes on a fresh cluster, checking after each.
pub fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    let mut cl = Cluster::new();
    let mut ops = 0;
    while !inp.is_empty() && ops < MAX_OPS {
        let op = Op::read(&mut inp);
        cl.apply(op);
        ops += 1;
    }
}

/// Encodes a sequence of operations (for the corpus generator).
pub fn encode(ops: &[Op]) -> Vec<u8> {
    let mut out = Output::default();
    for op in ops {
        op.write(&mut out);
    }
    out.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `replicate` seed (see examples/make_corpus.rs) elects a leader and commits.
    #[test]
    fn seed_replicate_commits() {
        let data = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/corpus/core_step/replicate"
        ))
        .expect("run `cargo run --example make_corpus` first");
        let mut inp = Input::new(&data);
        let mut cl = Cluster::new();
        while !inp.is_empty() {
            cl.apply(Op::read(&mut inp));
        }
        assert!(!cl.leaders.is_empty(), "no leader elected");
        assert!(
            cl.committed.len() >= 4,
            "only {} entries committed",
            cl.committed.len()
        );
        assert!(
            cl.applied.values().all(|&a| a >= 4),
            "applied: {:?}",
            cl.applied
        );
    }
}
