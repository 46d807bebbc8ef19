//! A small in-memory cluster for scenario tests: a message queue as the network, vectors as
//! disks, and explicit control over delivery, persistence, partitions and crashes. Each node's
//! "state machine" is the list of entries it applied; its snapshot is that list, encoded.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use raft_proto_core::{
    Config, Entry, EntryKind, HardState, Index, Input, Message, NodeId, Output, PersistWrite,
    RaftNode, RecoveredState, Role, SnapshotMeta,
};

/// A durable step the node asked for and that is not durable yet.
#[derive(Debug, Clone)]
pub enum Step {
    Write(PersistWrite),
    Install { seq: u64, meta: SnapshotMeta },
}

impl Step {
    pub fn seq(&self) -> u64 {
        match self {
            Step::Write(w) => w.seq,
            Step::Install { seq, .. } => *seq,
        }
    }
}

/// What a node's disk holds durably, plus steps requested but not yet durable.
#[derive(Debug, Default, Clone)]
pub struct Disk {
    pub hard_state: HardState,
    /// Last compacted index: `entries` start after it.
    pub offset: Index,
    pub entries: Vec<Entry>,
    pub snapshot: Option<(SnapshotMeta, Bytes)>,
    /// A snapshot being received: its metadata and the bytes so far.
    pub incoming: Option<(SnapshotMeta, Vec<u8>)>,
    pub pending: VecDeque<Step>,
}

impl Disk {
    fn apply(&mut self, step: Step) {
        match step {
            Step::Write(w) => {
                if let Some(t) = w.truncate_from {
                    self.entries.retain(|e| e.index < t);
                }
                self.entries.extend(w.entries.iter().cloned());
                if let Some(hs) = w.hard_state {
                    self.hard_state = hs;
                }
            }
            Step::Install { meta, .. } => {
                let (incoming, data) = self.incoming.take().expect("a snapshot was received");
                assert_eq!(incoming, meta, "the installed snapshot is the one received");
                let continues = self
                    .entries
                    .iter()
                    .any(|e| e.index == meta.last_index && e.term == meta.last_term);
                if continues {
                    self.entries.retain(|e| e.index > meta.last_index);
                } else {
                    self.entries.clear();
                }
                self.offset = meta.last_index;
                self.snapshot = Some((meta, Bytes::from(data)));
            }
        }
    }

    fn recovered(&self) -> RecoveredState {
        RecoveredState {
            hard_state: self.hard_state,
            snapshot: self.snapshot.as_ref().map(|s| s.0.clone()),
            entries: self.entries.clone(),
        }
    }
}

/// Encodes a list of applied entries as a snapshot (index, term, kind, length, data each).
pub fn encode_state(applied: &[Entry]) -> Bytes {
    let mut out = Vec::new();
    for e in applied {
        out.extend_from_slice(&e.index.to_le_bytes());
        out.extend_from_slice(&e.term.to_le_bytes());
        out.push(e.kind.to_byte());
        out.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&e.data);
    }
    Bytes::from(out)
}

/// The inverse of [`encode_state`].
pub fn decode_state(mut b: &[u8]) -> Vec<Entry> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let index = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
        let term = u64::from_le_bytes(b[8..16].try_into().expect("8 bytes"));
        let kind = EntryKind::from_byte(b[16]).expect("a known kind");
        let len = u32::from_le_bytes(b[17..21].try_into().expect("4 bytes")) as usize;
        let data = Bytes::copy_from_slice(&b[21..21 + len]);
        out.push(Entry {
            term,
            index,
            kind,
            data,
        });
        b = &b[21 + len..];
    }
    out
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
    /// When true, applied entries and restores are reported back (`Input::Applied`) at once.
    pub report_applied: bool,
    /// When true, snapshots asked for are taken and reported at once; otherwise they wait in
    /// `snapshot_requests`.
    pub auto_snapshot: bool,
    pub snapshot_requests: BTreeMap<NodeId, SnapshotMeta>,
    /// Reads the nodes asked for (entries and snapshot chunks), carried out at once unless
    /// `hold_reads` is set.
    pub hold_reads: bool,
    pub reads: VecDeque<(NodeId, Output)>,
    pub applied: BTreeMap<NodeId, Vec<Entry>>,
    pub restores: BTreeMap<NodeId, usize>,
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
            report_applied: false,
            auto_snapshot: true,
            snapshot_requests: BTreeMap::new(),
            hold_reads: false,
            reads: VecDeque::new(),
            applied: BTreeMap::new(),
            restores: BTreeMap::new(),
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

    /// (Re)creates node `id` from what its disk holds durably; its state machine restarts from
    /// the disk's snapshot.
    pub fn restart(&mut self, id: NodeId) {
        let disk = self.disks.get_mut(&id).expect("disk");
        disk.pending.clear();
        disk.incoming = None;
        let rec = disk.recovered();
        let state = disk
            .snapshot
            .as_ref()
            .map_or_else(Vec::new, |s| decode_state(&s.1));
        let node = RaftNode::new(self.configs[&id].clone(), rec).expect("valid recovery");
        self.nodes.insert(id, node);
        self.applied.insert(id, state);
        self.snapshot_requests.remove(&id);
        self.reads.retain(|(n, _)| *n != id);
    }

    /// Starts a new node `id` with an empty disk that waits to join the cluster (its
    /// configuration's voter list is empty).
    pub fn add_node(&mut self, id: NodeId) {
        let mut c = self.configs[&self.ids[0]].clone();
        c.id = id;
        c.voters = Vec::new();
        c.voter_data = Vec::new();
        self.configs.insert(id, c);
        self.ids.push(id);
        self.disks.insert(id, Disk::default());
        self.applied.insert(id, Vec::new());
        self.restart(id);
    }

    /// Stops node `id` for good (its messages are dropped from then on).
    pub fn remove_node(&mut self, id: NodeId) {
        self.nodes.remove(&id);
        self.ids.retain(|&n| n != id);
    }

    pub fn node(&self, id: NodeId) -> &RaftNode {
        &self.nodes[&id]
    }

    pub fn step(&mut self, id: NodeId, input: Input) {
        let outs = self.nodes.get_mut(&id).expect("node").step(input);
        for o in outs {
            self.trace.push((id, o.clone()));
            self.output(id, o);
        }
    }

    fn output(&mut self, id: NodeId, o: Output) {
        match o {
            Output::Send { to, msg } if !self.cut.contains(&(id, to)) => {
                self.net.push_back((id, to, msg));
            }
            Output::Persist(w) => self.durable_step(id, Step::Write(w)),
            Output::InstallSnapshot { seq, meta } => {
                self.durable_step(id, Step::Install { seq, meta })
            }
            Output::Apply { entries } => {
                let last = entries.last().map(|e| e.index);
                self.applied.get_mut(&id).expect("applied").extend(entries);
                if let (true, Some(index)) = (self.report_applied, last) {
                    self.step(id, Input::Applied { index });
                }
            }
            Output::TakeSnapshot { meta } => {
                let applied = &self.applied[&id];
                assert_eq!(
                    applied.last().map_or(0, |e| e.index),
                    meta.last_index,
                    "node {id}: a snapshot is asked for at exactly what was handed out"
                );
                if self.auto_snapshot {
                    self.take_snapshot(id, meta);
                } else {
                    self.snapshot_requests.insert(id, meta);
                }
            }
            Output::Compact { through } => {
                let disk = self.disks.get_mut(&id).expect("disk");
                let covered = disk.snapshot.as_ref().map_or(0, |s| s.0.last_index);
                assert!(through <= covered, "node {id} compacts past its snapshot");
                disk.entries.retain(|e| e.index > through);
                disk.offset = disk.offset.max(through);
            }
            Output::SnapshotChunk { meta, offset, data } => {
                let disk = self.disks.get_mut(&id).expect("disk");
                if offset == 0 {
                    disk.incoming = Some((meta.clone(), Vec::new()));
                }
                let (m, buf) = disk
                    .incoming
                    .as_mut()
                    .expect("a snapshot is being received");
                assert_eq!(*m, meta, "chunks of one snapshot");
                assert_eq!(buf.len() as u64, offset, "chunks come in order");
                buf.extend_from_slice(&data);
            }
            Output::RestoreSnapshot { meta } => {
                let disk = &self.disks[&id];
                let (m, data) = disk
                    .snapshot
                    .as_ref()
                    .expect("restore from a stored snapshot");
                assert_eq!(*m, meta, "restore from the installed snapshot");
                let state = decode_state(data);
                self.applied.insert(id, state);
                *self.restores.entry(id).or_default() += 1;
                if self.report_applied {
                    self.step(
                        id,
                        Input::Applied {
                            index: meta.last_index,
                        },
                    );
                }
            }
            read @ (Output::FetchEntries { .. } | Output::ReadSnapshot { .. }) => {
                self.reads.push_back((id, read));
                if !self.hold_reads {
                    self.serve_reads();
                }
            }
            _ => {}
        }
    }

    fn durable_step(&mut self, id: NodeId, step: Step) {
        let seq = step.seq();
        let disk = self.disks.get_mut(&id).expect("disk");
        disk.pending.push_back(step);
        if self.auto_persist {
            self.persist(id, seq);
        }
    }

    /// Takes the snapshot node `id` asked for: its applied list, stored and reported.
    pub fn take_snapshot(&mut self, id: NodeId, meta: SnapshotMeta) {
        let applied = &self.applied[&id];
        let state: Vec<Entry> = applied
            .iter()
            .filter(|e| e.index <= meta.last_index)
            .cloned()
            .collect();
        let data = encode_state(&state);
        let index = meta.last_index;
        self.disks.get_mut(&id).expect("disk").snapshot = Some((meta, data));
        self.step(id, Input::SnapshotTaken { index });
    }

    /// Takes the snapshots asked for while `auto_snapshot` was off.
    pub fn take_requested_snapshots(&mut self) {
        for (id, meta) in std::mem::take(&mut self.snapshot_requests) {
            self.take_snapshot(id, meta);
        }
    }

    /// Carries out the reads the nodes asked for, in order.
    pub fn serve_reads(&mut self) {
        while let Some((id, read)) = self.reads.pop_front() {
            if !self.nodes.contains_key(&id) {
                continue;
            }
            let disk = &self.disks[&id];
            let input = match read {
                Output::FetchEntries {
                    to,
                    lo,
                    hi,
                    max_bytes,
                } => {
                    let mut size = 0u64;
                    let mut entries = Vec::new();
                    for e in disk
                        .entries
                        .iter()
                        .filter(|e| e.index >= lo && e.index < hi)
                    {
                        size += e.data.len() as u64;
                        if !entries.is_empty() && size > max_bytes {
                            break;
                        }
                        entries.push(e.clone());
                    }
                    Input::EntriesFetched { to, lo, entries }
                }
                Output::ReadSnapshot {
                    to,
                    offset,
                    max_len,
                    ..
                } => {
                    let (meta, data) = disk.snapshot.as_ref().expect("a snapshot to read");
                    let start = (offset as usize).min(data.len());
                    let end = (start + max_len as usize).min(data.len());
                    Input::SnapshotRead {
                        to,
                        snapshot: meta.last_id(),
                        offset,
                        data: data.slice(start..end),
                        total: data.len() as u64,
                    }
                }
                _ => continue,
            };
            self.step(id, input);
        }
    }

    /// Makes node `id`'s pending steps up to `seq` durable and reports it.
    pub fn persist(&mut self, id: NodeId, seq: u64) {
        let disk = self.disks.get_mut(&id).expect("disk");
        while disk.pending.front().is_some_and(|w| w.seq() <= seq) {
            let w = disk.pending.pop_front().expect("front");
            disk.apply(w);
        }
        self.step(id, Input::Persisted { seq });
    }

    /// Makes every pending step of node `id` durable.
    pub fn persist_all(&mut self, id: NodeId) {
        if let Some(seq) = self.disks[&id].pending.back().map(Step::seq) {
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
        if self.nodes.contains_key(&id) {
            self.step(id, Input::Tick);
        }
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

    /// Outputs of node `id` in the trace that match `f`.
    pub fn count_outputs(&self, id: NodeId, f: impl Fn(&Output) -> bool) -> usize {
        self.trace.iter().filter(|(n, o)| *n == id && f(o)).count()
    }
}
