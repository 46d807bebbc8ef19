//! Property tests.
//!
//! (a) A single node fed arbitrary inputs (messages from arbitrary senders with arbitrary terms,
//!     indexes and entries, proposals, durability reports, apply reports) never panics and keeps
//!     its cursors ordered; with well-formed appends, what it writes is always recoverable.
//! (b) 3- and 5-node clusters driven by a generated schedule (ticks, delivery in any order,
//!     drops, duplicates, partial and full persistence, crash-restarts from the durable disk,
//!     partitions, proposals) keep Raft's safety properties after every step.
//!
//! Size knobs (defaults keep the file at a few seconds in debug builds):
//! `RAFT_PROPTEST_CASES` (default 64) and `RAFT_PROPTEST_STEPS` (default 300), e.g.
//! `RAFT_PROPTEST_CASES=1000 RAFT_PROPTEST_STEPS=1000 cargo test --release --test properties`.

use std::collections::BTreeMap;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use raft_proto_core::message::{
    AppendEntries, AppendEntriesResponse, AppendResult, Heartbeat, HeartbeatResponse, RequestVote,
    RequestVoteResponse,
};
use raft_proto_core::{
    Config, Entry, EntryKind, HardState, Index, Input, LogId, Message, NodeId, Output,
    PersistWrite, Proposal, RaftNode, RecoveredState, Role, Term,
};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cases() -> u32 {
    env_or("RAFT_PROPTEST_CASES", 64) as u32
}

fn steps() -> usize {
    env_or("RAFT_PROPTEST_STEPS", 300)
}

fn proptest_config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        // No regression files: this suite must not create files in the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// =====================================================================================
// (a) a single node and arbitrary inputs
// =====================================================================================

/// Terms: mostly small, sometimes extreme. `bounded` keeps them below 2^32.
fn term_s(bounded: bool) -> BoxedStrategy<Term> {
    if bounded {
        prop_oneof![8 => 0..10u64, 1 => 0..(1u64 << 32)].boxed()
    } else {
        prop_oneof![8 => 0..10u64, 1 => Just(u64::MAX), 1 => any::<u64>()].boxed()
    }
}

fn index_s() -> BoxedStrategy<Index> {
    prop_oneof![
        10 => 0..12u64,
        1 => Just(u64::MAX),
        1 => Just(u64::MAX - 1),
        1 => any::<u64>()
    ]
    .boxed()
}

fn logid_s(bounded: bool) -> impl Strategy<Value = LogId> {
    (term_s(bounded), index_s()).prop_map(|(term, index)| LogId { term, index })
}

/// Entry bodies: (term, is a no-op, payload).
fn body_s(bounded: bool) -> impl Strategy<Value = (Term, bool, Vec<u8>)> {
    (
        term_s(bounded),
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..6),
    )
}

fn make_entry(term: Term, index: Index, noop: bool, data: Vec<u8>) -> Entry {
    Entry {
        term,
        index,
        kind: if noop {
            EntryKind::Noop
        } else {
            EntryKind::Normal
        },
        data: Bytes::from(data),
    }
}

/// AppendEntries: usually consecutive after `prev`, sometimes with arbitrary indexes.
/// `well_formed` makes the entry terms non-decreasing from `prev.term` and at most the
/// message term, as a real leader sends them.
fn append_s(bounded: bool, well_formed: bool) -> impl Strategy<Value = Message> {
    (
        term_s(bounded),
        logid_s(bounded),
        prop::collection::vec((body_s(bounded), index_s()), 0..4),
        prop::bool::weighted(0.8),
        index_s(),
    )
        .prop_map(move |(term, prev, bodies, consecutive, commit)| {
            let mut last_term = prev.term;
            let entries = bodies
                .into_iter()
                .enumerate()
                .map(|(k, ((t, noop, data), idx))| {
                    let index = if consecutive || well_formed {
                        prev.index.wrapping_add(k as u64 + 1)
                    } else {
                        idx
                    };
                    let t = if well_formed {
                        last_term = last_term.max(t.min(term));
                        last_term
                    } else {
                        t
                    };
                    make_entry(t, index, noop, data)
                })
                .collect();
            let prev = if well_formed {
                LogId {
                    term: prev.term.min(term),
                    index: prev.index,
                }
            } else {
                prev
            };
            Message::AppendEntries(AppendEntries {
                term,
                prev,
                entries,
                commit,
            })
        })
}

fn message_s(bounded: bool, well_formed: bool) -> BoxedStrategy<Message> {
    let result = prop_oneof![
        index_s().prop_map(|match_index| AppendResult::Success { match_index }),
        (index_s(), logid_s(bounded))
            .prop_map(|(rejected, hint)| AppendResult::Reject { rejected, hint }),
    ];
    prop_oneof![
        1 => (term_s(bounded), any::<bool>(), logid_s(bounded)).prop_map(|(term, pre_vote, last_log)| {
            Message::RequestVote(RequestVote {
                term,
                pre_vote,
                last_log,
                transfer: false,
            })
        }),
        1 => (term_s(bounded), any::<bool>(), any::<bool>()).prop_map(|(term, pre_vote, granted)| {
            Message::RequestVoteResponse(RequestVoteResponse {
                term,
                pre_vote,
                granted,
            })
        }),
        2 => append_s(bounded, well_formed),
        1 => (term_s(bounded), result)
            .prop_map(|(term, result)| Message::AppendEntriesResponse(AppendEntriesResponse {
                term,
                result
            })),
        1 => (term_s(bounded), index_s())
            .prop_map(|(term, commit)| Message::Heartbeat(Heartbeat { term, commit })),
        1 => term_s(bounded).prop_map(|term| Message::HeartbeatResponse(HeartbeatResponse { term })),
    ]
    .boxed()
}

/// One step for the single node. `PersistAll` and `PersistSome` make writes durable in the
/// model disk and report them; `Raw` inputs include arbitrary `Persisted` reports.
#[derive(Debug, Clone)]
enum Act {
    Raw(Input),
    PersistAll,
    PersistSome(usize),
}

fn proposal_s() -> impl Strategy<Value = Proposal> {
    (any::<u64>(), prop::collection::vec(any::<u8>(), 0..40)).prop_map(|(request, data)| Proposal {
        request,
        data: Bytes::from(data),
    })
}

/// `raw_persisted`: also generate `Persisted` with arbitrary sequence numbers (which make a
/// disk model meaningless, so the recoverability property leaves them out).
fn act_s(bounded: bool, well_formed: bool, raw_persisted: bool) -> BoxedStrategy<Act> {
    let from = prop_oneof![10 => 1..=3u64, 1 => Just(0u64), 1 => 4..=6u64, 1 => Just(u64::MAX)];
    let persisted = if raw_persisted {
        prop_oneof![0..8u64, any::<u64>()].boxed()
    } else {
        Just(0u64).boxed()
    };
    prop_oneof![
        20 => Just(Act::Raw(Input::Tick)),
        40 => (from, message_s(bounded, well_formed))
            .prop_map(|(from, msg)| Act::Raw(Input::Receive { from, msg })),
        5 => proposal_s().prop_map(|p| Act::Raw(Input::Propose(p))),
        2 => prop::collection::vec(proposal_s(), 0..4)
            .prop_map(|ps| Act::Raw(Input::ProposeBatch(ps))),
        3 => persisted.prop_map(|seq| Act::Raw(Input::Persisted { seq })),
        8 => Just(Act::PersistAll),
        4 => any::<usize>().prop_map(Act::PersistSome),
        2 => index_s().prop_map(|index| Act::Raw(Input::Applied { index })),
    ]
    .boxed()
}

/// A node, its model disk and what the checks need to remember.
struct Single {
    node: RaftNode,
    cfg: Config,
    issued: u64,
    pending: Vec<PersistWrite>,
    /// Nodes heard from (answers may go to them, even if not members).
    leaders_heard: Vec<NodeId>,
    hard_state: HardState,
    entries: Vec<Entry>,
    applied_to: Index,
    max_term: Term,
}

impl Single {
    fn new(start_as_leader: bool) -> Self {
        let cfg = Config::new(1, vec![1, 2, 3]);
        let node = RaftNode::new(cfg.clone(), RecoveredState::default()).expect("valid");
        let mut s = Single {
            node,
            cfg,
            issued: 0,
            pending: Vec::new(),
            leaders_heard: Vec::new(),
            hard_state: HardState::default(),
            entries: Vec::new(),
            applied_to: 0,
            max_term: 0,
        };
        if start_as_leader {
            s.make_leader();
        }
        s
    }

    fn make_leader(&mut self) {
        for _ in 0..100 {
            if self.node.role() != Role::Follower {
                break;
            }
            self.step(Input::Tick).expect("tick");
        }
        let term = self.node.term() + 1;
        let grant = |pre_vote| Input::Receive {
            from: 2,
            msg: Message::RequestVoteResponse(RequestVoteResponse {
                term,
                pre_vote,
                granted: true,
            }),
        };
        self.step(grant(true)).expect("pre-vote");
        self.persist_upto(self.pending.len()).expect("persist");
        self.step(grant(false)).expect("vote");
        self.persist_upto(self.pending.len()).expect("persist");
        assert_eq!(self.node.role(), Role::Leader);
    }

    /// Steps the node and checks every output and the node's cursors.
    fn step(&mut self, input: Input) -> Result<(), String> {
        // Messages go to members, or answer a node heard from (requests are processed whatever
        // the configuration: the sender may belong to one this node has not seen yet).
        if let Input::Receive { from, .. } = &input {
            if *from > 1 && !self.leaders_heard.contains(from) {
                self.leaders_heard.push(*from);
            }
        }
        let outs = self.node.step(input);
        for o in outs {
            match o {
                Output::Send { to, msg }
                    if (to == 1 || !(1..=3).contains(&to)) && !self.leaders_heard.contains(&to) =>
                {
                    return Err(format!("message to {to}: {msg:?}"));
                }
                Output::Persist(w) => {
                    if w.seq != self.issued + 1 {
                        return Err(format!("write seq {} after {}", w.seq, self.issued));
                    }
                    self.issued = w.seq;
                    self.pending.push(w);
                }
                Output::Apply { entries } => {
                    for e in entries {
                        if e.index != self.applied_to + 1 {
                            return Err(format!("applied {} after {}", e.index, self.applied_to));
                        }
                        self.applied_to = e.index;
                    }
                }
                _ => {}
            }
        }
        let st = self.node.status();
        if st.term < self.max_term {
            return Err(format!(
                "term went down from {} to {}",
                self.max_term, st.term
            ));
        }
        self.max_term = st.term;
        let ordered = st.applied <= st.applying
            && st.applying <= st.commit
            && st.applying <= st.persisted
            && st.commit <= st.last_index
            && st.persisted <= st.last_index
            && st.applying == self.applied_to;
        if !ordered {
            return Err(format!("cursors out of order: {st:?}"));
        }
        Ok(())
    }

    /// Makes the first `k` pending writes durable on the model disk and reports the last.
    fn persist_upto(&mut self, k: usize) -> Result<(), String> {
        let k = k.min(self.pending.len());
        if k == 0 {
            return Ok(());
        }
        let done: Vec<PersistWrite> = self.pending.drain(..k).collect();
        for w in &done {
            if let Some(t) = w.truncate_from {
                self.entries.retain(|e| e.index < t);
            }
            self.entries.extend(w.entries.iter().cloned());
            if let Some(hs) = w.hard_state {
                self.hard_state = hs;
            }
        }
        self.step(Input::Persisted {
            seq: done.last().expect("k > 0").seq,
        })
    }

    /// The disk holds a state the node can restart from, and the prefix the node claims
    /// durable (`persisted`) is what the disk holds.
    fn check_disk(&self) -> Result<(), String> {
        let rec = RecoveredState {
            hard_state: self.hard_state,
            snapshot: None,
            entries: self.entries.clone(),
        };
        if let Err(e) = RaftNode::new(self.cfg.clone(), rec) {
            return Err(format!(
                "durable state is not recoverable: {e}; disk terms {:?}, hard state {:?}",
                self.entries.iter().map(|e| e.term).collect::<Vec<_>>(),
                self.hard_state
            ));
        }
        let persisted = self.node.status().persisted;
        for i in 1..=persisted {
            let disk = self.entries.get((i - 1) as usize);
            if disk != self.node.entry(i) {
                return Err(format!(
                    "persisted = {persisted} but entry {i} is {disk:?} on disk and {:?} in memory",
                    self.node.entry(i)
                ));
            }
        }
        Ok(())
    }

    fn act(&mut self, a: Act) -> Result<(), String> {
        match a {
            Act::Raw(input) => self.step(input),
            Act::PersistAll => self.persist_upto(self.pending.len()),
            Act::PersistSome(k) => {
                let n = self.pending.len();
                if n == 0 {
                    Ok(())
                } else {
                    self.persist_upto(k % n + 1)
                }
            }
        }
    }
}

fn run_single(
    start_as_leader: bool,
    acts: Vec<Act>,
    check_disk: bool,
) -> Result<(), TestCaseError> {
    let mut s = Single::new(start_as_leader);
    for (k, a) in acts.into_iter().enumerate() {
        let what = format!("{a:?}");
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            s.act(a)?;
            if check_disk {
                s.check_disk()?;
            }
            Ok::<(), String>(())
        }));
        match r {
            Err(_) => {
                return Err(TestCaseError::fail(format!(
                    "step {k}: the node panicked on {what}"
                )))
            }
            Ok(Err(e)) => return Err(TestCaseError::fail(format!("step {k} ({what}): {e}"))),
            Ok(Ok(())) => {}
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(proptest_config())]

    /// (a) Arbitrary inputs over the full u64 range of terms and indexes never panic.
    #[test]
    fn single_node_never_panics_on_arbitrary_inputs(
        leader in any::<bool>(),
        acts in prop::collection::vec(act_s(false, false, true), 1..steps()),
    ) {
        run_single(leader, acts, false)?;
    }

    /// (a) The same with terms below 2^32, so that term overflow (see
    /// `bad_input::maximal_term_from_a_peer_never_panics`) does not hide other problems.
    #[test]
    fn single_node_never_panics_with_bounded_terms(
        leader in any::<bool>(),
        acts in prop::collection::vec(act_s(true, false, true), 1..steps()),
    ) {
        run_single(leader, acts, false)?;
    }

    /// (a) With well-formed appends (entry terms non-decreasing, at most the message term),
    /// whatever the node writes can be recovered, and its `persisted` prefix is on disk.
    #[test]
    fn single_node_durable_state_is_always_recoverable(
        leader in any::<bool>(),
        acts in prop::collection::vec(act_s(true, true, false), 1..steps()),
    ) {
        run_single(leader, acts, true)?;
    }
}

// =====================================================================================
// (b) randomized clusters checked for safety after every step
// =====================================================================================

/// One step of the cluster schedule. Node and message selectors are reduced modulo the number
/// of nodes / messages in flight.
#[derive(Debug, Clone)]
enum Action {
    Tick(u8),
    TickAll,
    /// Deliver every message in flight, starting at the selected one and wrapping around.
    Flush(u16),
    /// Make every pending write of every node durable.
    PersistEveryone,
    /// Deliver the selected in-flight message (any order: this is the reordering).
    Deliver(u16),
    Drop(u16),
    Duplicate(u16),
    /// Make every pending write of a node durable.
    Persist(u8),
    /// Make a prefix of a node's pending writes durable.
    PersistSome(u8, u8),
    /// Crash a node and restart it from its durable disk.
    Restart(u8),
    /// Crash and restart the newest leader, if there is one (failover is where it matters).
    RestartLeader,
    /// Split the nodes into two groups by this bit mask.
    Partition(u8),
    Heal,
    Propose(u8),
    Applied(u8),
}

fn action_s(crashes: bool) -> BoxedStrategy<Action> {
    let (restart, restart_leader) = if crashes {
        (
            any::<u8>().prop_map(Action::Restart).boxed(),
            Just(Action::RestartLeader).boxed(),
        )
    } else {
        (
            any::<u8>().prop_map(Action::Tick).boxed(),
            Just(Action::TickAll).boxed(),
        )
    };
    prop_oneof![
        20 => any::<u8>().prop_map(Action::Tick),
        6 => Just(Action::TickAll),
        24 => any::<u16>().prop_map(Action::Deliver),
        12 => any::<u16>().prop_map(Action::Flush),
        2 => any::<u16>().prop_map(Action::Drop),
        2 => any::<u16>().prop_map(Action::Duplicate),
        10 => any::<u8>().prop_map(Action::Persist),
        8 => Just(Action::PersistEveryone),
        4 => (any::<u8>(), any::<u8>()).prop_map(|(n, k)| Action::PersistSome(n, k)),
        2 => restart,
        2 => restart_leader,
        1 => any::<u8>().prop_map(Action::Partition),
        3 => Just(Action::Heal),
        8 => any::<u8>().prop_map(Action::Propose),
        2 => any::<u8>().prop_map(Action::Applied),
    ]
    .boxed()
}

#[derive(Debug, Default, Clone)]
struct SimDisk {
    hard_state: HardState,
    entries: Vec<Entry>,
    pending: Vec<PersistWrite>,
    /// Last write sequence issued by the current incarnation.
    issued: u64,
}

impl SimDisk {
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

/// A cluster whose network is a bag: any in-flight message can be delivered next, dropped or
/// duplicated.
struct Sim {
    n: u64,
    cfgs: Vec<Config>,
    nodes: Vec<RaftNode>,
    incarnation: Vec<u32>,
    disks: Vec<SimDisk>,
    net: Vec<(NodeId, NodeId, Message)>,
    /// Partition group of each node; messages between groups are lost.
    group: Vec<u8>,
    /// What each node's current incarnation applied, in order.
    applied: Vec<Vec<Entry>>,
    next_request: u64,
    // --- ground truth for the safety checks ---
    /// Leader of each term: (node, incarnation).
    leaders: BTreeMap<Term, (NodeId, u32)>,
    /// First committed value seen at each index, and the term of the node that saw it.
    committed: BTreeMap<Index, (Entry, Term)>,
    // --- statistics, to keep the schedule honest ---
    elections: usize,
    max_commit: Index,
    /// Also check the durability contract: a granted vote and a leader's own term and vote
    /// are on its disk.
    durability_checks: bool,
}

impl Sim {
    fn new(n: u64, seed: u64) -> Self {
        let ids: Vec<NodeId> = (1..=n).collect();
        let cfgs: Vec<Config> = ids
            .iter()
            .map(|&id| {
                let mut c = Config::new(id, ids.clone());
                c.election_timeout_ticks = 4;
                c.heartbeat_interval_ticks = 1;
                c.seed = seed;
                c
            })
            .collect();
        let nodes = cfgs
            .iter()
            .map(|c| RaftNode::new(c.clone(), RecoveredState::default()).expect("valid"))
            .collect();
        Sim {
            n,
            cfgs,
            nodes,
            incarnation: vec![0; n as usize],
            disks: vec![SimDisk::default(); n as usize],
            net: Vec::new(),
            group: vec![0; n as usize],
            applied: vec![Vec::new(); n as usize],
            next_request: 0,
            leaders: BTreeMap::new(),
            committed: BTreeMap::new(),
            elections: 0,
            max_commit: 0,
            durability_checks: false,
        }
    }

    fn pick(&self, sel: u8) -> NodeId {
        u64::from(sel) % self.n + 1
    }

    fn step(&mut self, id: NodeId, input: Input) -> Result<(), String> {
        let i = (id - 1) as usize;
        let outs = self.nodes[i].step(input);
        for o in outs {
            match o {
                Output::Send { to, msg } => {
                    if to == id || !(1..=self.n).contains(&to) {
                        return Err(format!("node {id} sends to {to}: {msg:?}"));
                    }
                    if let Message::RequestVoteResponse(r) = &msg {
                        let hs = self.disks[i].hard_state;
                        let durable = hs.term > r.term || (hs.term == r.term && hs.vote == to);
                        if self.durability_checks && r.granted && !r.pre_vote && !durable {
                            return Err(format!(
                                "node {id} grants its term-{} vote to {to} but its disk holds {hs:?}",
                                r.term
                            ));
                        }
                    }
                    self.net.push((id, to, msg));
                }
                Output::Persist(w) => {
                    let d = &mut self.disks[i];
                    if w.seq != d.issued + 1 {
                        return Err(format!("node {id}: write {} after {}", w.seq, d.issued));
                    }
                    d.issued = w.seq;
                    d.pending.push(w);
                }
                Output::Apply { entries } => {
                    for e in entries {
                        let expect = self.applied[i].len() as u64 + 1;
                        if e.index != expect {
                            return Err(format!(
                                "node {id} applied {} expecting {expect}",
                                e.index
                            ));
                        }
                        self.applied[i].push(e);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn persist(&mut self, id: NodeId, count: usize) -> Result<(), String> {
        let i = (id - 1) as usize;
        let k = count.min(self.disks[i].pending.len());
        if k == 0 {
            return Ok(());
        }
        let done: Vec<PersistWrite> = self.disks[i].pending.drain(..k).collect();
        for w in &done {
            self.disks[i].apply(w);
        }
        let seq = done.last().expect("k > 0").seq;
        self.step(id, Input::Persisted { seq })
    }

    fn restart(&mut self, id: NodeId) -> Result<(), String> {
        let i = (id - 1) as usize;
        let d = &mut self.disks[i];
        d.pending.clear();
        d.issued = 0;
        let rec = RecoveredState {
            hard_state: d.hard_state,
            snapshot: None,
            entries: d.entries.clone(),
        };
        self.nodes[i] = RaftNode::new(self.cfgs[i].clone(), rec)
            .map_err(|e| format!("node {id} cannot restart from its disk: {e}"))?;
        self.incarnation[i] += 1;
        self.applied[i].clear();
        Ok(())
    }

    fn newest_leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter(|n| n.role() == Role::Leader)
            .max_by_key(|n| n.term())
            .map(|n| n.id())
    }

    fn deliver(&mut self, (from, to, msg): (NodeId, NodeId, Message)) -> Result<(), String> {
        if self.group[(from - 1) as usize] == self.group[(to - 1) as usize] {
            self.step(to, Input::Receive { from, msg })?;
        }
        Ok(())
    }

    fn act(&mut self, a: &Action) -> Result<(), String> {
        match *a {
            Action::Tick(s) => self.step(self.pick(s), Input::Tick)?,
            Action::TickAll => {
                for id in 1..=self.n {
                    self.step(id, Input::Tick)?;
                }
            }
            Action::Deliver(k) => {
                if !self.net.is_empty() {
                    let m = self.net.swap_remove(k as usize % self.net.len());
                    self.deliver(m)?;
                }
            }
            Action::Flush(k) => {
                let mut batch = std::mem::take(&mut self.net);
                if !batch.is_empty() {
                    let len = batch.len();
                    batch.rotate_left(k as usize % len);
                }
                for m in batch {
                    self.deliver(m)?;
                }
            }
            Action::PersistEveryone => {
                for id in 1..=self.n {
                    self.persist(id, usize::MAX)?;
                }
            }
            Action::Drop(k) => {
                if !self.net.is_empty() {
                    self.net.swap_remove(k as usize % self.net.len());
                }
            }
            Action::Duplicate(k) => {
                if !self.net.is_empty() {
                    let m = self.net[k as usize % self.net.len()].clone();
                    self.net.push(m);
                }
            }
            Action::Persist(s) => self.persist(self.pick(s), usize::MAX)?,
            Action::PersistSome(s, k) => {
                let id = self.pick(s);
                let n = self.disks[(id - 1) as usize].pending.len();
                if n > 0 {
                    self.persist(id, k as usize % n + 1)?;
                }
            }
            Action::Restart(s) => self.restart(self.pick(s))?,
            Action::RestartLeader => {
                if let Some(id) = self.newest_leader() {
                    self.restart(id)?;
                }
            }
            Action::Partition(mask) => {
                for i in 0..self.n as usize {
                    self.group[i] = (mask >> i) & 1;
                }
            }
            Action::Heal => self.group.iter_mut().for_each(|g| *g = 0),
            Action::Propose(s) => {
                self.next_request += 1;
                let request = self.next_request;
                // Mostly to a leader (the newest), sometimes to anyone.
                let id = match self.newest_leader() {
                    Some(l) if s % 4 != 0 => l,
                    _ => self.pick(s),
                };
                let data = Bytes::from(format!("{id}/{request}"));
                self.step(id, Input::Propose(Proposal { request, data }))?;
            }
            Action::Applied(s) => {
                let id = self.pick(s);
                let index = self.nodes[(id - 1) as usize].status().applying;
                self.step(id, Input::Applied { index })?;
            }
        }
        Ok(())
    }

    /// Raft's safety properties, checked against everything seen so far.
    fn check(&mut self) -> Result<(), String> {
        for i in 0..self.n as usize {
            let node = &self.nodes[i];
            let id = node.id();
            let st = node.status();
            if st.commit > st.last_index || st.applying > st.commit {
                return Err(format!("node {id}: cursors out of order: {st:?}"));
            }
            if self.durability_checks && st.role == Role::Leader {
                let hs = self.disks[i].hard_state;
                if hs.term != st.term || hs.vote != id {
                    return Err(format!(
                        "node {id} leads term {} but its disk holds {hs:?}",
                        st.term
                    ));
                }
            }
            // Election safety: one leader (incarnation) per term.
            if st.role == Role::Leader {
                let me = (id, self.incarnation[i]);
                match self.leaders.get(&st.term) {
                    Some(&other) if other != me => {
                        return Err(format!(
                            "two leaders in term {}: (node, incarnation) {other:?} and {me:?}",
                            st.term
                        ))
                    }
                    Some(_) => {}
                    None => {
                        self.leaders.insert(st.term, me);
                        self.elections += 1;
                    }
                }
            }
            // State machine safety: a committed index holds one value forever, on every node.
            for idx in 1..=st.commit {
                let Some(e) = node.entry(idx) else {
                    return Err(format!(
                        "node {id}: committed entry {idx} missing from its log"
                    ));
                };
                match self.committed.get(&idx) {
                    Some((truth, _)) if truth != e => {
                        return Err(format!(
                            "committed entry {idx} changed: first seen {truth:?}, node {id} \
                             (term {}) now has {e:?}",
                            st.term
                        ))
                    }
                    Some(_) => {}
                    None => {
                        self.committed.insert(idx, (e.clone(), st.term));
                    }
                }
            }
            self.max_commit = self.max_commit.max(st.commit);
        }
        for i in 0..self.n as usize {
            let node = &self.nodes[i];
            let id = node.id();
            // Leader completeness: a leader of a later term holds every committed entry.
            if node.role() == Role::Leader {
                for (idx, (truth, seen_in)) in &self.committed {
                    if *seen_in < node.term() && node.entry(*idx) != Some(truth) {
                        return Err(format!(
                            "leader {id} of term {} lacks entry {idx} = {truth:?} committed by \
                             term {seen_in}; it has {:?}",
                            node.term(),
                            node.entry(*idx)
                        ));
                    }
                }
            }
            // Applied sequences are the committed log's prefixes, hence prefixes of each other.
            for (k, e) in self.applied[i].iter().enumerate() {
                match self.committed.get(&(k as u64 + 1)) {
                    Some((truth, _)) if truth == e => {}
                    other => {
                        return Err(format!(
                            "node {id} applied {e:?} at position {}, committed value {:?}",
                            k + 1,
                            other.map(|o| &o.0)
                        ))
                    }
                }
            }
        }
        for a in 0..self.n as usize {
            for b in a + 1..self.n as usize {
                let (x, y) = (&self.applied[a], &self.applied[b]);
                let k = x.len().min(y.len());
                if x[..k] != y[..k] {
                    return Err(format!(
                        "applied sequences of nodes {} and {} diverge",
                        a + 1,
                        b + 1
                    ));
                }
            }
        }
        Ok(())
    }
}

fn run_cluster(
    n: u64,
    seed: u64,
    schedule: &[Action],
    durability_checks: bool,
) -> Result<(usize, Index), TestCaseError> {
    let mut sim = Sim::new(n, seed);
    sim.durability_checks = durability_checks;
    for (k, a) in schedule.iter().enumerate() {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            sim.act(a)?;
            sim.check()
        }));
        match r {
            Err(_) => return Err(TestCaseError::fail(format!("step {k}: panic on {a:?}"))),
            Ok(Err(e)) => return Err(TestCaseError::fail(format!("step {k} ({a:?}): {e}"))),
            Ok(Ok(())) => {}
        }
    }
    Ok((sim.elections, sim.max_commit))
}

proptest! {
    #![proptest_config(proptest_config())]

    /// (b) 3 nodes, with crash-restarts.
    #[test]
    fn cluster_of_3_is_safe(
        seed in any::<u64>(),
        schedule in prop::collection::vec(action_s(true), steps()),
    ) {
        run_cluster(3, seed, &schedule, false)?;
    }

    /// (b) 5 nodes, with crash-restarts.
    #[test]
    fn cluster_of_5_is_safe(
        seed in any::<u64>(),
        schedule in prop::collection::vec(action_s(true), steps()),
    ) {
        run_cluster(5, seed, &schedule, false)?;
    }

    /// (b) 3 or 5 nodes without crashes: a crash-free baseline for the checks above.
    #[test]
    fn cluster_without_crashes_is_safe(
        seed in any::<u64>(),
        five in any::<bool>(),
        schedule in prop::collection::vec(action_s(false), steps()),
    ) {
        run_cluster(if five { 5 } else { 3 }, seed, &schedule, false)?;
    }

    /// (b) The durability contract under the same schedules, 3 and 5 nodes: a vote grant
    /// leaves only once the vote is on disk, and a node leads only once its own term and
    /// vote are on disk (otherwise a crash lets it lead the same term twice).
    #[test]
    fn cluster_promises_are_durable(
        seed in any::<u64>(),
        five in any::<bool>(),
        schedule in prop::collection::vec(action_s(true), steps()),
    ) {
        run_cluster(if five { 5 } else { 3 }, seed, &schedule, true)?;
    }
}

/// The generated schedules must actually elect leaders and commit entries, or the safety
/// checks above are vacuous. Runs a fixed set of schedules from a seeded generator.
#[test]
fn cluster_schedules_make_progress() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        ProptestConfig::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let strategy = prop::collection::vec(action_s(true), 300);
    let (mut elections, mut commits, mut runs) = (0, 0, 0);
    for seed in 0..20u64 {
        let schedule = strategy.new_tree(&mut runner).expect("tree").current();
        for n in [3, 5] {
            // A failing run counts as no progress; the safety tests report the failure itself.
            let (e, c) = run_cluster(n, seed, &schedule, false).unwrap_or((0, 0));
            elections += e;
            commits += c;
            runs += 1;
        }
    }
    eprintln!("{elections} elections, {commits} max-commit sum over {runs} runs");
    assert!(
        elections >= runs,
        "{elections} elections over {runs} runs: schedules too weak"
    );
    assert!(
        commits >= 2 * runs as u64,
        "{commits} committed entries over {runs} runs: schedules too weak"
    );
}
