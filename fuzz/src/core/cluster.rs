//! The cluster: three nodes, their disks and state machines, and the network; how each [`Op`]
//! is carried out.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use raft_proto_core::{
    ChangeStep, Config, Index, Input as RaftInput, Message, NodeId, Output as RaftOutput, Proposal,
    RaftNode, SnapshotMeta, Term,
};

use super::checks::{bump, Key, Stats};
use super::disk::{Disk, Step};
use super::ops::{node_of, Op};
use super::state::StateMachine;
use super::{IDS, MAX_QUEUED, SENDERS};

/// The cluster and the safety bookkeeping.
pub struct Cluster {
    pub(super) nodes: BTreeMap<NodeId, RaftNode>,
    pub(super) disks: BTreeMap<NodeId, Disk>,
    pub(super) net: VecDeque<(NodeId, NodeId, Message)>,
    /// The node cut off from the others, if any.
    pub(super) isolated: Option<NodeId>,
    pub(super) sms: BTreeMap<NodeId, StateMachine>,
    /// Snapshots asked for (`TakeSnapshot`) and not yet taken or failed.
    pub(super) snapshot_requests: BTreeMap<NodeId, SnapshotMeta>,
    /// Reads asked for (`FetchEntries`, `ReadSnapshot`) and not yet served.
    pub(super) reads: BTreeMap<NodeId, Vec<RaftOutput>>,
    /// Last durable-step sequence number handed out, per node (since its last restart).
    pub(super) last_seq: BTreeMap<NodeId, u64>,
    /// Ground truth: the first committed value seen for each index.
    pub(super) committed: BTreeMap<Index, Key>,
    /// For each ground-truth entry, the term of the node first seen to commit (or apply) it:
    /// the entry was committed in that term or an earlier one.
    pub(super) committed_in: BTreeMap<Index, Term>,
    /// Per node: committed prefix as that node saw it (across a crash, what was durable).
    pub(super) local: BTreeMap<NodeId, BTreeMap<Index, Key>>,
    /// Per node: the commit index up to which its entries were compared.
    pub(super) checked: BTreeMap<NodeId, Index>,
    /// The leader of each term seen.
    pub(super) leaders: BTreeMap<Term, NodeId>,
    /// The last term each node was checked for leader completeness in.
    pub(super) leader_checked: BTreeMap<NodeId, Term>,
    /// A message was forged as if from a member: cluster-wide checks are off.
    pub(super) tainted: bool,
    pub(super) next_request: u64,
    pub(super) stats: Stats,
}

fn config(id: NodeId) -> Config {
    let mut c = Config::new(id, IDS.to_vec());
    c.election_timeout_ticks = 4;
    c.heartbeat_interval_ticks = 1;
    c.max_message_bytes = 64;
    c.max_inflight_messages = 4;
    c.max_apply_bytes = 64;
    c.max_apply_backlog_bytes = 400;
    c.log_cache_bytes = 0;
    c.snapshot_after_entries = Some(4);
    c.snapshot_after_bytes = None;
    c.compaction_keep_entries = 1;
    c.snapshot_chunk_bytes = 16;
    c.max_snapshot_inflight_bytes = 48;
    c.seed = 0xF022 + id;
    c
}

impl Cluster {
    /// Three fresh nodes.
    pub fn new() -> Self {
        let mut cl = Cluster {
            nodes: BTreeMap::new(),
            disks: BTreeMap::new(),
            net: VecDeque::new(),
            isolated: None,
            sms: BTreeMap::new(),
            snapshot_requests: BTreeMap::new(),
            reads: BTreeMap::new(),
            last_seq: BTreeMap::new(),
            committed: BTreeMap::new(),
            committed_in: BTreeMap::new(),
            local: BTreeMap::new(),
            checked: BTreeMap::new(),
            leaders: BTreeMap::new(),
            leader_checked: BTreeMap::new(),
            tainted: false,
            next_request: 1,
            stats: Stats::default(),
        };
        for id in IDS {
            cl.disks.insert(id, Disk::default());
            cl.restart(id);
        }
        cl
    }

    /// What happened so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Whether a message was forged as if from a member.
    pub fn tainted(&self) -> bool {
        self.tainted
    }

    /// The node `id`.
    pub fn node(&self, id: NodeId) -> &RaftNode {
        &self.nodes[&id]
    }

    /// The last index node `id`'s state machine holds (applied or restored).
    pub fn applied(&self, id: NodeId) -> Index {
        self.sms[&id].applied
    }

    /// Node `id`'s state machine, as `(index, term, payload)` per entry.
    pub fn state(&self, id: NodeId) -> Vec<(Index, Term, Bytes)> {
        self.sms[&id]
            .entries
            .iter()
            .map(|e| (e.index, e.term, e.data.clone()))
            .collect()
    }

    /// The length of the committed prefix known (the ground truth's highest index).
    pub fn committed_len(&self) -> Index {
        self.committed.keys().next_back().copied().unwrap_or(0)
    }

    /// Reads waiting on node `id`.
    pub fn pending_reads(&self, id: NodeId) -> usize {
        self.reads.get(&id).map_or(0, Vec::len)
    }

    fn restart(&mut self, id: NodeId) {
        let disk = self.disks.get_mut(&id).expect("disk");
        disk.pending.clear();
        disk.incoming = None;
        let rec = disk.recovered();
        let snapshot = disk.snapshot.clone();
        // What the node committed beyond its durable commit index may have been lost with the
        // crash; without forged messages it was committed cluster-wide and the cluster-wide
        // check still covers it. A snapshot's prefix counts as committed.
        let durable_commit = disk.hard_state.commit.max(disk.snapshot_index());
        let node =
            RaftNode::new(config(id), rec).expect("a node must restart from what it made durable");
        if let Some(local) = self.local.get_mut(&id) {
            local.retain(|&i, _| i <= durable_commit);
        }
        let sm = match snapshot {
            Some((meta, data)) => StateMachine {
                applied: meta.last_index,
                entries: self.check_restored(id, &meta, &data),
            },
            None => StateMachine::default(),
        };
        self.nodes.insert(id, node);
        self.sms.insert(id, sm);
        self.snapshot_requests.remove(&id);
        self.reads.remove(&id);
        self.last_seq.insert(id, 0);
        self.checked.insert(id, 0);
    }

    pub(super) fn cut(&self, from: NodeId, to: NodeId) -> bool {
        self.isolated.is_some_and(|n| n == from || n == to)
    }

    pub(super) fn step(&mut self, id: NodeId, input: RaftInput) {
        let outs = self.nodes.get_mut(&id).expect("node").step(input);
        for o in outs {
            self.output(id, o);
        }
    }

    fn deliver(&mut self, i: usize) {
        if let Some((from, to, msg)) = self.net.remove(i) {
            if self.nodes.contains_key(&to) && !self.cut(from, to) {
                self.step(to, RaftInput::Receive { from, msg });
            }
        }
    }

    fn deliver_many(&mut self) {
        for _ in 0..64 {
            if self.net.is_empty() {
                break;
            }
            self.deliver(0);
        }
    }

    fn ack_applied(&mut self, id: NodeId) {
        let index = self.sms[&id].applied;
        self.step(id, RaftInput::Applied { index });
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
            Op::PersistAll(n) => self.persist_all(node_of(n)),
            Op::PersistOne(n) => {
                let id = node_of(n);
                if let Some(seq) = self.disks[&id].pending.front().map(Step::seq) {
                    self.persist_through(id, seq);
                }
            }
            Op::Crash(n) => {
                let id = node_of(n);
                bump(&mut self.stats.crashes, id);
                self.restart(id);
            }
            Op::AckApplied(n) => self.ack_applied(node_of(n)),
            Op::Inject { from, to, msg } => {
                let from = SENDERS[from as usize % SENDERS.len()];
                // Leader messages are heard from anyone (a leader may lead a configuration the
                // receiver has not seen yet): a forged one acts as a forged leader.
                let leader_message = matches!(
                    msg,
                    Message::AppendEntries(_)
                        | Message::Heartbeat(_)
                        | Message::InstallSnapshot(_)
                        | Message::TimeoutNow(_)
                );
                if IDS.contains(&from) || (leader_message && from != 0) {
                    self.tainted = true;
                }
                self.step(node_of(to), RaftInput::Receive { from, msg });
            }
            Op::DeliverMany => self.deliver_many(),
            Op::TakeSnapshot(n) => self.finish_snapshot(node_of(n), true),
            Op::FailSnapshot(n) => self.finish_snapshot(node_of(n), false),
            Op::ServeRead(n, i) => {
                let id = node_of(n);
                let len = self.pending_reads(id);
                if len > 0 {
                    self.serve_read(id, i as usize % len);
                }
            }
            Op::ServeReads(n) => self.serve_reads(node_of(n)),
            Op::TriggerSnapshot(n) => self.step(node_of(n), RaftInput::TriggerSnapshot),
            Op::Settle => {
                for _ in 0..3 {
                    for id in IDS {
                        self.persist_all(id);
                        self.serve_reads(id);
                        self.ack_applied(id);
                    }
                    self.deliver_many();
                }
            }
            Op::Isolate(n) => {
                self.isolated = IDS.get(n as usize % 4).copied();
            }
            Op::Change(n, k) => {
                let step = match k % 4 {
                    0 => ChangeStep::AddLearner {
                        id: 4,
                        data: Bytes::from_static(b"node 4"),
                    },
                    1 => ChangeStep::Remove { id: 4 },
                    2 => ChangeStep::Promote { id: 4 },
                    _ => ChangeStep::Remove {
                        id: IDS[(k as usize / 4) % IDS.len()],
                    },
                };
                let request = self.next_request;
                self.next_request += 1;
                let input = RaftInput::ChangeMembership {
                    request,
                    steps: vec![step],
                };
                self.step(node_of(n), input);
            }
            Op::Transfer(n, k) => {
                let request = self.next_request;
                self.next_request += 1;
                let to = IDS.get(k as usize % 4).copied();
                self.step(node_of(n), RaftInput::TransferLeadership { request, to });
            }
        }
        self.check();
    }
}

impl Default for Cluster {
    fn default() -> Self {
        Self::new()
    }
}
