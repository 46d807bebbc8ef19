//! A small in-memory cluster for scenario tests: a message queue as the network, vectors as
//! disks, and explicit control over delivery, persistence, partitions and crashes.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use raft_proto_core::{
    Config, Entry, HardState, Input, Message, NodeId, Output, PersistWrite, RaftNode,
    RecoveredState, Role,
};

/// What a node's disk holds durably, plus writes requested but not yet durable.
#[derive(Debug, Default, Clone)]
pub struct Disk {
    pub hard_state: HardState,
    pub entries: Vec<Entry>,
    pub pending: VecDeque<PersistWrite>,
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

pub struct Cluster {
    pub ids: Vec<NodeId>,
    pub nodes: BTreeMap<NodeId, RaftNode>,
    pub disks: BTreeMap<NodeId, Disk>,
    pub net: VecDeque<(NodeId, NodeId, Message)>,
    /// Directed links that drop messages.
    pub cut: BTreeSet<(NodeId, NodeId)>,
    /// When true, every write is made durable and acknowledged right away.
    pub auto_persist: bool,
    pub applied: BTreeMap<NodeId, Vec<Entry>>,
    pub trace: Vec<(NodeId, Output)>,
    pub configs: BTreeMap<NodeId, Config>,
}

pub fn config(id: NodeId, ids: &[NodeId], seed: u64) -> Config {
    let mut c = Config::new(id, ids.to_vec());
    c.seed = seed;
    c
}

impl Cluster {
    pub fn new(n: u64, seed: u64) -> Self {
        Self::with_config(n, seed, |_| {})
    }

    pub fn with_config(n: u64, seed: u64, tweak: impl Fn(&mut Config)) -> Self {
        let ids: Vec<NodeId> = (1..=n).collect();
        let mut configs = BTreeMap::new();
        for &id in &ids {
            let mut c = config(id, &ids, seed);
            tweak(&mut c);
            configs.insert(id, c);
        }
        let mut cl = Cluster {
            ids: ids.clone(),
            nodes: BTreeMap::new(),
            disks: BTreeMap::new(),
            net: VecDeque::new(),
            cut: BTreeSet::new(),
            auto_persist: true,
            applied: BTreeMap::new(),
            trace: Vec::new(),
            configs,
        };
        for &id in &ids {
            cl.disks.insert(id, Disk::default());
            cl.applied.insert(id, Vec::new());
            cl.restart(id);
        }
        cl
    }

    /// (Re)creates node `id` from what its disk holds durably.
    pub fn restart(&mut self, id: NodeId) {
        let disk = self.disks.get_mut(&id).expect("disk");
        disk.pending.clear();
        let rec = RecoveredState {
            hard_state: disk.hard_state,
            snapshot: None,
            entries: disk.entries.clone(),
        };
        let node = RaftNode::new(self.configs[&id].clone(), rec).expect("valid recovery");
        self.nodes.insert(id, node);
        self.applied.insert(id, Vec::new());
    }

    pub fn node(&self, id: NodeId) -> &RaftNode {
        &self.nodes[&id]
    }

    pub fn step(&mut self, id: NodeId, input: Input) {
        let outs = self.nodes.get_mut(&id).expect("node").step(input);
        for o in outs {
            self.trace.push((id, o.clone()));
            match o {
                Output::Send { to, msg } if !self.cut.contains(&(id, to)) => {
                    self.net.push_back((id, to, msg));
                }
                Output::Persist(w) => {
                    let seq = w.seq;
                    let disk = self.disks.get_mut(&id).expect("disk");
                    disk.pending.push_back(w);
                    if self.auto_persist {
                        self.persist(id, seq);
                    }
                }
                Output::Apply { entries } => {
                    self.applied.get_mut(&id).expect("applied").extend(entries);
                }
                _ => {}
            }
        }
    }

    /// Makes node `id`'s pending writes up to `seq` durable and reports it.
    pub fn persist(&mut self, id: NodeId, seq: u64) {
        let disk = self.disks.get_mut(&id).expect("disk");
        while disk.pending.front().is_some_and(|w| w.seq <= seq) {
            let w = disk.pending.pop_front().expect("front");
            disk.apply(&w);
        }
        self.step(id, Input::Persisted { seq });
    }

    /// Makes every pending write of node `id` durable.
    pub fn persist_all(&mut self, id: NodeId) {
        if let Some(seq) = self.disks[&id].pending.back().map(|w| w.seq) {
            self.persist(id, seq);
        }
    }

    /// Delivers messages until the network is empty (bounded).
    pub fn deliver_all(&mut self) {
        for _ in 0..100_000 {
            let Some((from, to, msg)) = self.net.pop_front() else {
                return;
            };
            if self.cut.contains(&(from, to)) || !self.nodes.contains_key(&to) {
                continue;
            }
            self.step(to, Input::Receive { from, msg });
        }
        panic!("network did not quiesce");
    }

    pub fn tick(&mut self, id: NodeId) {
        self.step(id, Input::Tick);
    }

    pub fn tick_all(&mut self) {
        for id in self.ids.clone() {
            self.tick(id);
        }
    }

    /// Ticks `id` until it leaves the follower role (starts a (pre-)campaign).
    pub fn fire_election(&mut self, id: NodeId) {
        for _ in 0..1000 {
            if self.node(id).role() != Role::Follower {
                return;
            }
            self.tick(id);
        }
        panic!("node {id} never campaigned");
    }

    /// Makes `id` campaign and delivers everything; returns whether it became leader.
    pub fn elect(&mut self, id: NodeId) -> bool {
        self.fire_election(id);
        self.deliver_all();
        self.node(id).role() == Role::Leader
    }

    pub fn leaders(&self) -> Vec<NodeId> {
        self.nodes
            .values()
            .filter(|n| n.role() == Role::Leader)
            .map(|n| n.id())
            .collect()
    }

    pub fn propose(&mut self, id: NodeId, request: u64, data: &'static [u8]) {
        self.step(
            id,
            Input::Propose(raft_proto_core::Proposal {
                request,
                data: Bytes::from_static(data),
            }),
        );
    }

    /// Cuts both directions between `a` and every node of `others`.
    pub fn isolate(&mut self, a: NodeId) {
        for &b in &self.ids {
            if b != a {
                self.cut.insert((a, b));
                self.cut.insert((b, a));
            }
        }
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// The payloads each node applied, for comparing state machines.
    pub fn applied_data(&self, id: NodeId) -> Vec<(u64, u64, Bytes)> {
        self.applied[&id]
            .iter()
            .map(|e| (e.term, e.index, e.data.clone()))
            .collect()
    }

    /// Messages in the network whose kind is `kind`.
    pub fn queued(&self, kind: &str) -> usize {
        self.net.iter().filter(|m| m.2.kind() == kind).count()
    }
}
