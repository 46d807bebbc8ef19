//! Inputs a peer, a driver or a storage layer can get wrong: unknown senders, stale terms,
//! out-of-range indexes, invalid configurations and recovered states, refused proposals.
//! Nothing may panic and nothing invalid may change the node's state.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;
use common::Cluster;
use raft_proto_core::message::{
    AppendEntries, AppendEntriesResponse, AppendResult, Heartbeat, HeartbeatResponse, RequestVote,
    RequestVoteResponse,
};
use raft_proto_core::{
    Config, ConfigError, Entry, EntryKind, Event, HardState, Index, Input, LogId, Message, NodeId,
    Output, PersistWrite, Proposal, ProposeError, RaftNode, RecoveredState, RecoveryError, Role,
    SnapshotMeta, Term,
};

// ----- a small single-node driver with a disk -----

/// One node driven by hand, with a model of its disk so that what it wrote can be recovered.
struct Drv {
    node: RaftNode,
    cfg: Config,
    issued: u64,
    pending: Vec<PersistWrite>,
    hard_state: HardState,
    entries: Vec<Entry>,
}

impl Drv {
    fn new(cfg: Config, rec: RecoveredState) -> Self {
        let node = RaftNode::new(cfg.clone(), rec.clone()).expect("valid");
        Drv {
            node,
            cfg,
            issued: 0,
            pending: Vec::new(),
            hard_state: rec.hard_state,
            entries: rec.entries,
        }
    }

    fn step(&mut self, input: Input) -> Vec<Output> {
        let outs = self.node.step(input);
        for o in &outs {
            if let Output::Persist(w) = o {
                self.issued = w.seq;
                self.pending.push(w.clone());
            }
        }
        outs
    }

    fn recv(&mut self, from: NodeId, msg: Message) -> Vec<Output> {
        self.step(Input::Receive { from, msg })
    }

    /// Makes every write durable and reports it.
    fn persist(&mut self) -> Vec<Output> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        for w in std::mem::take(&mut self.pending) {
            if let Some(t) = w.truncate_from {
                self.entries.retain(|e| e.index < t);
            }
            self.entries.extend(w.entries.iter().cloned());
            if let Some(hs) = w.hard_state {
                self.hard_state = hs;
            }
        }
        self.step(Input::Persisted { seq: self.issued })
    }

    /// Builds a node from what the disk holds.
    fn recover(&self) -> Result<RaftNode, RecoveryError> {
        RaftNode::new(
            self.cfg.clone(),
            RecoveredState {
                hard_state: self.hard_state,
                snapshot: None,
                entries: self.entries.clone(),
            },
        )
    }

    fn state(&self) -> String {
        format!("{:?}", self.node)
    }

    fn peers(&self) -> Vec<NodeId> {
        self.cfg
            .voters
            .iter()
            .copied()
            .filter(|&p| p != self.cfg.id)
            .collect()
    }

    /// Ticks until the node starts a pre-vote round, then feeds it grants until it leads.
    fn make_leader(&mut self) {
        for _ in 0..1000 {
            if self.node.role() != Role::Follower {
                break;
            }
            self.step(Input::Tick);
        }
        assert_eq!(self.node.role(), Role::PreCandidate);
        let term = self.node.term() + 1;
        for p in self.peers() {
            if self.node.role() != Role::PreCandidate {
                break;
            }
            self.recv(p, vote_resp(term, true, true));
        }
        assert_eq!(self.node.role(), Role::Candidate);
        self.persist();
        for p in self.peers() {
            if self.node.role() == Role::Leader {
                break;
            }
            self.recv(p, vote_resp(term, false, true));
        }
        assert_eq!(self.node.role(), Role::Leader);
        self.persist();
    }

    /// Ticks until the node becomes a candidate (pre-vote granted by one peer).
    fn make_candidate(&mut self) {
        for _ in 0..1000 {
            if self.node.role() != Role::Follower {
                break;
            }
            self.step(Input::Tick);
        }
        let term = self.node.term() + 1;
        let p = self.peers()[0];
        self.recv(p, vote_resp(term, true, true));
        assert_eq!(self.node.role(), Role::Candidate);
    }
}

// ----- message builders -----

fn ent(term: Term, index: Index) -> Entry {
    Entry {
        term,
        index,
        kind: EntryKind::Normal,
        data: Bytes::from_static(b"e"),
    }
}

fn lid(term: Term, index: Index) -> LogId {
    LogId { term, index }
}

fn vote_req(term: Term, pre_vote: bool, last_log: LogId) -> Message {
    Message::RequestVote(RequestVote {
        term,
        pre_vote,
        last_log,
        transfer: false,
    })
}

fn vote_resp(term: Term, pre_vote: bool, granted: bool) -> Message {
    Message::RequestVoteResponse(RequestVoteResponse {
        term,
        pre_vote,
        granted,
    })
}

fn append(term: Term, prev: LogId, entries: Vec<Entry>, commit: Index) -> Message {
    Message::AppendEntries(AppendEntries {
        term,
        prev,
        entries,
        commit,
    })
}

fn append_resp(term: Term, result: AppendResult) -> Message {
    Message::AppendEntriesResponse(AppendEntriesResponse { term, result })
}

fn heartbeat(term: Term, commit: Index) -> Message {
    Message::Heartbeat(Heartbeat { term, commit })
}

/// One message of every kind, in term `term`, around index `idx`.
fn every_kind(term: Term, idx: Index) -> Vec<Message> {
    vec![
        vote_req(term, true, lid(term, idx)),
        vote_req(term, false, lid(term, idx)),
        vote_resp(term, true, true),
        vote_resp(term, true, false),
        vote_resp(term, false, true),
        vote_resp(term, false, false),
        append(
            term,
            lid(term, idx),
            vec![ent(term, idx + 1)],
            idx.saturating_add(1),
        ),
        append(term, lid(term, idx), vec![], idx),
        append_resp(term, AppendResult::Success { match_index: idx }),
        append_resp(
            term,
            AppendResult::Reject {
                rejected: idx,
                hint: lid(term, idx),
            },
        ),
        heartbeat(term, idx),
        Message::HeartbeatResponse(HeartbeatResponse { term }),
        Message::TimeoutNow(raft_proto_core::message::TimeoutNow { term }),
    ]
}

/// A 3-node member (id 2 unless told) recovered at term 5 with entries of terms 1, 3, 5 and
/// commit 1.
fn recovered_term5() -> RecoveredState {
    RecoveredState {
        hard_state: HardState {
            term: 5,
            vote: 0,
            commit: 1,
        },
        snapshot: None,
        entries: vec![ent(1, 1), ent(3, 2), ent(5, 3)],
    }
}

fn follower_of_1() -> Drv {
    let mut d = Drv::new(Config::new(2, vec![1, 2, 3]), recovered_term5());
    d.recv(1, heartbeat(5, 1));
    assert_eq!(d.node.leader_hint(), Some(1));
    d
}

fn leader_1() -> Drv {
    let mut d = Drv::new(Config::new(1, vec![1, 2, 3]), recovered_term5());
    d.make_leader();
    assert_eq!(d.node.term(), 6);
    assert_eq!(d.node.last_log_id(), lid(6, 4));
    d
}

fn candidate_3() -> Drv {
    let mut d = Drv::new(Config::new(3, vec![1, 2, 3]), recovered_term5());
    d.make_candidate();
    assert_eq!(d.node.term(), 6);
    d
}

fn has_persist(outs: &[Output]) -> bool {
    outs.iter().any(|o| matches!(o, Output::Persist(_)))
}

fn has_invalid(outs: &[Output]) -> bool {
    outs.iter()
        .any(|o| matches!(o, Output::Event(Event::InvalidInput { .. })))
}

fn success_acks(outs: &[Output]) -> Vec<Index> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Send {
                msg:
                    Message::AppendEntriesResponse(AppendEntriesResponse {
                        result: AppendResult::Success { match_index },
                        ..
                    }),
                ..
            } => Some(*match_index),
            _ => None,
        })
        .collect()
}

fn rejects(outs: &[Output]) -> Vec<(Index, LogId)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Send {
                msg:
                    Message::AppendEntriesResponse(AppendEntriesResponse {
                        result: AppendResult::Reject { rejected, hint },
                        ..
                    }),
                ..
            } => Some((*rejected, *hint)),
            _ => None,
        })
        .collect()
}

fn log_of(n: &RaftNode) -> Vec<Entry> {
    (1..=n.last_log_id().index)
        .map(|i| n.entry(i).cloned().expect("entry"))
        .collect()
}

// ----- unknown senders -----

#[test]
fn unknown_senders_are_reported_and_ignored() {
    // Nothing at all is heard from node 0 or from the node itself. (Nodes outside the
    // configuration are heard like anyone: requests are processed without consulting the
    // configuration, see tests/membership.rs, and only voters' answers count.)
    let mut nodes = vec![
        (
            "fresh follower",
            Drv::new(Config::new(2, vec![1, 2, 3]), RecoveredState::default()),
        ),
        ("follower", follower_of_1()),
        ("candidate", candidate_3()),
        ("leader", leader_1()),
    ];
    for (what, d) in &mut nodes {
        let me = d.node.id();
        for from in [0, me] {
            for term in [0, 5, 6, 7, 1000, u64::MAX] {
                for msg in every_kind(term, 3) {
                    let before = d.state();
                    let outs = d.recv(from, msg.clone());
                    assert_eq!(
                        outs,
                        vec![Output::Event(Event::UnknownSender { from })],
                        "{what} {me}: {} from {from}",
                        msg.kind()
                    );
                    assert_eq!(
                        d.state(),
                        before,
                        "{what}: {msg:?} from {from} changed state"
                    );
                }
            }
        }
    }
}

#[test]
fn answers_from_non_voters_count_for_nothing() {
    // A candidate's election and a leader's commit ignore answers from nodes that do not vote.
    let mut d = candidate_3();
    let term = d.node.term();
    for from in [4, 99, u64::MAX] {
        d.recv(from, vote_resp(term, false, true));
    }
    assert_ne!(
        d.node.role(),
        Role::Leader,
        "grants from non-voters won nothing"
    );
    let mut l = leader_1();
    let commit = l.node.commit_index();
    for from in [4, 99, u64::MAX] {
        l.recv(
            from,
            append_resp(l.node.term(), AppendResult::Success { match_index: 3 }),
        );
    }
    assert_eq!(l.node.commit_index(), commit);
    assert_eq!(l.node.role(), Role::Leader);
}

// ----- stale terms -----

#[test]
fn stale_term_messages_never_change_state() {
    let nodes = vec![
        ("follower", follower_of_1(), 1),
        ("candidate", candidate_3(), 1),
        ("leader", leader_1(), 2),
    ];
    for (what, mut d, from) in nodes {
        let term = d.node.term();
        for stale in [0, 1, 3, term - 1] {
            for idx in [0, 2, 3, 100, u64::MAX - 1] {
                for msg in every_kind(stale, idx) {
                    let before = d.state();
                    let outs = d.recv(from, msg.clone());
                    for o in &outs {
                        match o {
                            Output::Send { to, msg: reply } => {
                                assert_eq!(*to, from, "{what}: reply to {}", msg.kind());
                                assert_eq!(
                                    reply.term(),
                                    term,
                                    "{what}: a stale {} must be answered with the current term",
                                    msg.kind()
                                );
                                if let Message::RequestVoteResponse(r) = reply {
                                    assert!(!r.granted, "{what}: stale vote granted");
                                }
                            }
                            other => panic!("{what}: stale {msg:?} produced {other:?}"),
                        }
                    }
                    assert_eq!(
                        d.state(),
                        before,
                        "{what}: stale {msg:?} changed the node's state"
                    );
                }
            }
        }
    }
}

// ----- out-of-range indexes -----

#[test]
fn append_with_prev_far_beyond_the_log_is_rejected() {
    for prev in [
        lid(5, 4),
        lid(5, 100),
        lid(5, u64::MAX - 1),
        lid(u64::MAX, u64::MAX),
        lid(0, u64::MAX),
    ] {
        for entries in [vec![], vec![ent(5, prev.index.wrapping_add(1))]] {
            for commit in [0, 3, u64::MAX] {
                let mut d = follower_of_1();
                let log = log_of(&d.node);
                let commit_before = d.node.commit_index();
                let outs = d.recv(1, append(5, prev, entries.clone(), commit));
                let rj = rejects(&outs);
                assert_eq!(rj.len(), 1, "prev {prev:?}: {outs:?}");
                assert_eq!(rj[0].0, prev.index);
                assert!(rj[0].1.index <= 3, "hint beyond the follower's log: {rj:?}");
                assert!(!has_persist(&outs), "{outs:?}");
                assert!(success_acks(&outs).is_empty());
                assert_eq!(log_of(&d.node), log);
                assert_eq!(d.node.commit_index(), commit_before);
                assert_eq!(d.node.term(), 5);
            }
        }
    }
}

#[test]
fn append_with_non_consecutive_entries_is_invalid() {
    let bad: Vec<Vec<Entry>> = vec![
        vec![ent(5, 4), ent(5, 6)],
        vec![ent(5, 5)],
        vec![ent(5, 4), ent(5, 4)],
        vec![ent(5, 4), ent(5, 3)],
        vec![ent(5, 0)],
        vec![ent(5, u64::MAX)],
        vec![ent(5, 4), ent(5, 5), ent(5, u64::MAX)],
    ];
    for entries in bad {
        let mut d = follower_of_1();
        let log = log_of(&d.node);
        let outs = d.recv(1, append(5, lid(5, 3), entries.clone(), 3));
        assert!(has_invalid(&outs), "{entries:?}: {outs:?}");
        assert!(!has_persist(&outs), "{entries:?}: {outs:?}");
        assert!(success_acks(&outs).is_empty(), "{entries:?}: {outs:?}");
        assert_eq!(log_of(&d.node), log);
        assert_eq!(d.node.commit_index(), 1);
    }
}

#[test]
fn append_with_entry_terms_above_the_message_term_is_invalid() {
    for entries in [
        vec![ent(6, 4)],
        vec![ent(5, 4), ent(6, 5)],
        vec![ent(u64::MAX, 4)],
    ] {
        let mut d = follower_of_1();
        let outs = d.recv(1, append(5, lid(5, 3), entries.clone(), 0));
        assert!(has_invalid(&outs), "{entries:?}: {outs:?}");
        assert!(!has_persist(&outs), "{entries:?}: {outs:?}");
        assert!(success_acks(&outs).is_empty());
        assert_eq!(d.node.last_log_id(), lid(5, 3));
    }
}

/// Entries whose terms go down (below `prev.term` or below each other) can't come from a real
/// leader. Storing them makes the durable log unrecoverable (`RecoveryError::TermDecreases`).
#[test]
fn append_with_decreasing_entry_terms_never_makes_the_disk_unrecoverable() {
    for (prev, entries) in [
        (lid(5, 3), vec![ent(4, 4)]),
        (lid(5, 3), vec![ent(5, 4), ent(2, 5)]),
        (lid(3, 2), vec![ent(1, 3)]),
    ] {
        let mut d = follower_of_1();
        let outs = d.recv(1, append(5, prev, entries.clone(), 0));
        d.persist();
        let rec = d.recover();
        assert!(
            rec.is_ok(),
            "after AppendEntries(prev {prev:?}, {entries:?}) -> {outs:?}, the disk holds \
             terms {:?} and recovery fails: {:?}",
            d.entries.iter().map(|e| e.term).collect::<Vec<_>>(),
            rec.err()
        );
    }
}

#[test]
fn append_commit_is_clamped_to_the_new_entries() {
    let mut d = follower_of_1();
    let outs = d.recv(1, append(5, lid(5, 3), vec![ent(5, 4)], u64::MAX));
    assert!(has_persist(&outs));
    assert_eq!(d.node.commit_index(), 4);
    let outs = d.persist();
    assert_eq!(success_acks(&outs), vec![4]);
    // Probe with an older prev and a huge commit: the commit can't pass the verified prefix.
    let mut d = follower_of_1();
    d.recv(1, append(5, lid(3, 2), vec![], u64::MAX));
    assert_eq!(d.node.commit_index(), 2);
}

#[test]
fn heartbeat_commit_is_clamped_to_the_last_index() {
    let mut d = follower_of_1();
    let outs = d.recv(1, heartbeat(5, u64::MAX));
    assert_eq!(d.node.commit_index(), 3);
    let applied: Vec<Index> = outs
        .iter()
        .filter_map(|o| match o {
            Output::Apply { entries } => Some(entries.iter().map(|e| e.index)),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(
        applied,
        vec![2, 3],
        "entry 1 was applied when joining at commit 1"
    );
    assert!(!has_invalid(&outs));
    // Entries not yet durable are committed but not applied.
    let outs = d.recv(1, append(5, lid(5, 3), vec![ent(5, 4), ent(5, 5)], 3));
    assert!(has_persist(&outs));
    let outs = d.recv(1, heartbeat(5, u64::MAX));
    assert_eq!(d.node.commit_index(), 5);
    assert!(
        !outs.iter().any(|o| matches!(o, Output::Apply { .. })),
        "{outs:?}"
    );
    let outs = d.persist();
    assert!(outs.iter().any(|o| matches!(o, Output::Apply { .. })));
    let st = d.node.status();
    assert_eq!((st.commit, st.applying, st.last_index), (5, 5, 5));
    // Applied beyond what was handed out is clamped.
    d.step(Input::Applied { index: u64::MAX });
    assert_eq!(d.node.status().applied, 5);
}

#[test]
fn success_ack_beyond_the_leaders_log_is_invalid() {
    for m in [5, 100, u64::MAX - 1, u64::MAX] {
        let mut d = leader_1();
        let peers = d.node.status().peers;
        let outs = d.recv(2, append_resp(6, AppendResult::Success { match_index: m }));
        assert!(has_invalid(&outs), "match {m}: {outs:?}");
        assert!(!has_persist(&outs));
        let after = d.node.status();
        for (a, b) in after.peers.iter().zip(&peers) {
            assert_eq!((a.id, a.matched, a.next), (b.id, b.matched, b.next));
        }
        assert_eq!(after.commit, 1);
    }
}

#[test]
fn reject_with_garbage_values_keeps_progress_in_bounds() {
    let vals = [0, 1, 3, 4, 5, u64::MAX - 1, u64::MAX];
    for rejected in vals {
        for hint_index in vals {
            for hint_term in [0, 1, 6, u64::MAX] {
                for acked_first in [false, true] {
                    let mut d = leader_1();
                    if acked_first {
                        // Node 2 is in sync: matched 4, replicating.
                        d.recv(2, append_resp(6, AppendResult::Success { match_index: 4 }));
                        d.persist();
                        assert_eq!(d.node.commit_index(), 4);
                    }
                    let before = d.node.status();
                    let hint = lid(hint_term, hint_index);
                    let outs = d.recv(2, append_resp(6, AppendResult::Reject { rejected, hint }));
                    let st = d.node.status();
                    let last = st.last_index;
                    assert_eq!(st.commit, before.commit);
                    assert_eq!(st.role, Role::Leader);
                    let p = st.peers.iter().find(|p| p.id == 2).unwrap();
                    let p0 = before.peers.iter().find(|p| p.id == 2).unwrap();
                    assert_eq!(p.matched, p0.matched, "a reject never lowers match");
                    assert!(
                        p.matched < p.next && p.next <= last + 1,
                        "reject({rejected}, {hint:?}): next {} matched {} last {last}",
                        p.next,
                        p.matched
                    );
                    for o in &outs {
                        if let Output::Send {
                            msg: Message::AppendEntries(a),
                            ..
                        } = o
                        {
                            assert!(a.prev.index <= last);
                            assert!(a.prev.index + a.entries.len() as u64 <= last);
                        }
                    }
                    // The leader can still bring node 2 up to date afterwards.
                    let outs = d.recv(2, append_resp(6, AppendResult::Success { match_index: 4 }));
                    assert!(!has_invalid(&outs));
                    assert_eq!(
                        d.node
                            .status()
                            .peers
                            .iter()
                            .find(|p| p.id == 2)
                            .unwrap()
                            .matched,
                        4
                    );
                }
            }
        }
    }
}

#[test]
fn vote_requests_with_huge_last_log_do_not_panic() {
    for last in [
        lid(u64::MAX, u64::MAX),
        lid(6, u64::MAX),
        lid(0, u64::MAX),
        lid(u64::MAX, 0),
    ] {
        for pre_vote in [true, false] {
            let mut d = Drv::new(Config::new(2, vec![1, 2, 3]), recovered_term5());
            let outs = d.recv(1, vote_req(6, pre_vote, last));
            let outs = [outs, d.persist()].concat();
            let granted: Vec<bool> = outs
                .iter()
                .filter_map(|o| match o {
                    Output::Send {
                        msg: Message::RequestVoteResponse(r),
                        ..
                    } => Some(r.granted),
                    _ => None,
                })
                .collect();
            let up_to_date = last.term > 5 || (last.term == 5 && last.index >= 3);
            assert_eq!(
                granted,
                vec![up_to_date],
                "{last:?} pre {pre_vote}: {outs:?}"
            );
            assert_eq!(d.node.last_log_id(), lid(5, 3));
        }
    }
}

/// A peer can send any term, including `u64::MAX`. Adopting it must not make a later election
/// (which computes `term + 1`) panic.
#[test]
fn maximal_term_from_a_peer_never_panics() {
    let mut panicked = Vec::new();
    for msg in every_kind(u64::MAX, 3) {
        let mut d = Drv::new(Config::new(2, vec![1, 2, 3]), recovered_term5());
        let kind = msg.kind();
        let r = catch_unwind(AssertUnwindSafe(|| {
            d.recv(1, msg);
            d.persist();
            for _ in 0..100 {
                d.step(Input::Tick);
                d.persist();
                let t = d.node.term();
                d.recv(3, vote_resp(t.wrapping_add(1), true, true));
                d.persist();
            }
        }));
        if r.is_err() {
            panicked.push((kind, d.node.term()));
        }
    }
    assert!(
        panicked.is_empty(),
        "after a message with term u64::MAX the node panicked on a later tick: \
         (message kind, term at panic) = {panicked:?}"
    );
}

#[test]
fn applied_and_persisted_extremes_do_not_panic() {
    let mut d = leader_1();
    for index in [0, 1, u64::MAX] {
        d.step(Input::Applied { index });
        assert!(d.node.status().applied <= d.node.status().applying);
    }
    for seq in [0, u64::MAX] {
        d.step(Input::Persisted { seq });
    }
    let outs = d.step(Input::ProposeBatch(vec![]));
    assert!(!has_persist(&outs));
}

// ----- configuration errors -----

fn cfg_err(cfg: Config) -> RecoveryError {
    RaftNode::new(cfg, RecoveredState::default()).expect_err("must be refused")
}

#[test]
fn invalid_configurations_are_refused_with_the_specific_error() {
    use ConfigError::*;
    let e = |c| match cfg_err(c) {
        RecoveryError::Config(e) => e,
        other => panic!("not a ConfigError: {other:?}"),
    };
    assert_eq!(e(Config::new(1, vec![2, 3])), NotAVoter(1));
    assert_eq!(e(Config::new(1, vec![1, 2, 2])), DuplicateVoter(2));
    assert_eq!(e(Config::new(1, vec![3, 1, 3, 2])), DuplicateVoter(3));
    assert_eq!(e(Config::new(0, vec![0, 1, 2])), ZeroNodeId);
    assert_eq!(e(Config::new(0, vec![1, 2])), ZeroNodeId);
    assert_eq!(e(Config::new(1, vec![0, 1, 2])), ZeroNodeId);
    assert_eq!(e(Config::new(4, vec![1, 2, 3])), NotAVoter(4));

    let tweak = |f: &dyn Fn(&mut Config)| {
        let mut c = Config::new(1, vec![1, 2, 3]);
        f(&mut c);
        e(c)
    };
    assert_eq!(
        tweak(&|c| c.heartbeat_interval_ticks = 10),
        HeartbeatNotBelowElection {
            heartbeat: 10,
            election: 10
        }
    );
    assert_eq!(
        tweak(&|c| c.heartbeat_interval_ticks = 11),
        HeartbeatNotBelowElection {
            heartbeat: 11,
            election: 10
        }
    );
    assert_eq!(tweak(&|c| c.election_timeout_ticks = 0), ZeroTimeout);
    assert_eq!(tweak(&|c| c.heartbeat_interval_ticks = 0), ZeroTimeout);
    assert_eq!(
        tweak(&|c| c.max_message_bytes = 0),
        ZeroLimit("max_message_bytes")
    );
    assert_eq!(
        tweak(&|c| c.max_inflight_messages = 0),
        ZeroLimit("max_inflight_messages")
    );
    assert_eq!(
        tweak(&|c| c.max_inflight_bytes = 0),
        ZeroLimit("max_inflight_bytes")
    );
    assert_eq!(
        tweak(&|c| c.max_proposal_bytes = 0),
        ZeroLimit("max_proposal_bytes")
    );
    assert_eq!(
        tweak(&|c| c.max_uncommitted_bytes = 0),
        ZeroLimit("max_uncommitted_bytes")
    );
    assert_eq!(
        tweak(&|c| c.max_apply_bytes = 0),
        ZeroLimit("max_apply_bytes")
    );
    // An election timeout whose randomised double would overflow is refused...
    assert_eq!(
        tweak(&|c| c.election_timeout_ticks = u32::MAX),
        ElectionTimeoutTooLarge(u32::MAX)
    );
    // ...and the extremes that are valid are accepted.
    let mut c = Config::new(1, vec![1]);
    c.election_timeout_ticks = raft_proto_core::MAX_ELECTION_TIMEOUT_TICKS;
    c.heartbeat_interval_ticks = raft_proto_core::MAX_ELECTION_TIMEOUT_TICKS - 1;
    c.seed = u64::MAX;
    assert!(RaftNode::new(c, RecoveredState::default()).is_ok());
}

// ----- recovery errors -----

fn rec(term: Term, commit: Index, entries: Vec<Entry>) -> RecoveredState {
    RecoveredState {
        hard_state: HardState {
            term,
            vote: 0,
            commit,
        },
        snapshot: None,
        entries,
    }
}

fn rec_err(r: RecoveredState) -> RecoveryError {
    RaftNode::new(Config::new(1, vec![1, 2, 3]), r).expect_err("must be refused")
}

#[test]
fn inconsistent_recovered_states_are_refused_with_the_specific_error() {
    assert_eq!(
        rec_err(rec(3, 0, vec![ent(1, 1), ent(1, 3)])),
        RecoveryError::Gap {
            expected: 2,
            found: 3
        }
    );
    assert_eq!(
        rec_err(rec(3, 0, vec![ent(1, 2)])),
        RecoveryError::Gap {
            expected: 1,
            found: 2
        }
    );
    assert_eq!(
        rec_err(rec(3, 0, vec![ent(1, 1), ent(1, 1)])),
        RecoveryError::Gap {
            expected: 2,
            found: 1
        }
    );
    assert_eq!(
        rec_err(rec(3, 0, vec![ent(1, 1), ent(3, 2), ent(2, 3)])),
        RecoveryError::TermDecreases { index: 3 }
    );
    assert_eq!(
        rec_err(rec(3, 0, vec![ent(1, 1), ent(4, 2)])),
        RecoveryError::TermAboveHardState {
            index: 2,
            term: 4,
            hard_term: 3
        }
    );
    assert_eq!(
        rec_err(rec(3, 3, vec![ent(1, 1), ent(2, 2)])),
        RecoveryError::CommitBeyondLog { commit: 3, last: 2 }
    );
    assert_eq!(
        rec_err(rec(0, 1, vec![])),
        RecoveryError::CommitBeyondLog { commit: 1, last: 0 }
    );
    // Snapshot variants.
    let mut r = rec(3, 0, vec![ent(2, 12)]);
    r.snapshot = Some(SnapshotMeta {
        last_index: 10,
        last_term: 2,
        ..SnapshotMeta::default()
    });
    assert_eq!(
        rec_err(r.clone()),
        RecoveryError::Gap {
            expected: 11,
            found: 12
        }
    );
    r.entries = vec![ent(1, 11)];
    assert_eq!(
        rec_err(r.clone()),
        RecoveryError::TermDecreases { index: 11 }
    );
    r.entries = vec![];
    r.snapshot = Some(SnapshotMeta {
        last_index: 10,
        last_term: 4,
        ..SnapshotMeta::default()
    });
    assert_eq!(
        rec_err(r),
        RecoveryError::TermAboveHardState {
            index: 10,
            term: 4,
            hard_term: 3
        }
    );
    // Config errors win over (or come with) recovery errors.
    assert!(matches!(
        RaftNode::new(Config::new(1, vec![2]), rec(3, 3, vec![])),
        Err(RecoveryError::Config(ConfigError::NotAVoter(1)))
    ));
    // A consistent state is accepted and restored.
    let n = RaftNode::new(
        Config::new(1, vec![1, 2, 3]),
        rec(3, 2, vec![ent(1, 1), ent(3, 2)]),
    )
    .expect("valid");
    assert_eq!(n.commit_index(), 2);
    assert_eq!(n.last_log_id(), lid(3, 2));
}

/// Storage can hand back any numbers; validation must refuse or accept, never panic.
#[test]
fn recovery_with_extreme_indexes_does_not_panic() {
    let cases = [
        (u64::MAX, vec![]),
        (u64::MAX - 1, vec![ent(2, u64::MAX)]),
        (u64::MAX, vec![ent(2, 0)]),
    ];
    for (last_index, entries) in cases {
        let r = RecoveredState {
            hard_state: HardState {
                term: 3,
                vote: 0,
                commit: 0,
            },
            snapshot: Some(SnapshotMeta {
                last_index,
                last_term: 2,
                ..SnapshotMeta::default()
            }),
            entries: entries.clone(),
        };
        let res = catch_unwind(|| RaftNode::new(Config::new(1, vec![1, 2, 3]), r).map(|_| ()));
        match res {
            Err(_) => panic!(
                "RaftNode::new panicked on snapshot last_index {last_index} with entries {entries:?}"
            ),
            Ok(Ok(())) => panic!(
                "RaftNode::new accepted a log whose next index overflows: snapshot last_index \
                 {last_index}, entries {entries:?}"
            ),
            Ok(Err(_)) => {}
        }
    }
}

// ----- proposals -----

fn propose(n: &mut RaftNode, request: u64, data: Bytes) -> Result<LogId, ProposeError> {
    let outs = n.step(Input::Propose(Proposal { request, data }));
    outs.iter()
        .find_map(|o| match o {
            Output::Proposed { request: r, result } if *r == request => Some(*result),
            _ => None,
        })
        .expect("every proposal is answered")
}

#[test]
fn proposals_on_non_leaders_are_refused_with_the_leader_hint() {
    let mut c = Cluster::new(3, 4);
    assert!(c.elect(3));
    let mut f = c.node(1).clone();
    assert_eq!(
        propose(&mut f, 1, Bytes::from_static(b"x")),
        Err(ProposeError::NotLeader {
            leader_hint: Some(3)
        })
    );
    let mut fresh =
        RaftNode::new(Config::new(1, vec![1, 2, 3]), RecoveredState::default()).unwrap();
    let before = format!("{fresh:?}");
    assert_eq!(
        propose(&mut fresh, 2, Bytes::from_static(b"x")),
        Err(ProposeError::NotLeader { leader_hint: None })
    );
    assert_eq!(
        format!("{fresh:?}"),
        before,
        "a refused proposal changes nothing"
    );
    let mut cand = candidate_3();
    assert_eq!(
        propose(&mut cand.node, 3, Bytes::from_static(b"x")),
        Err(ProposeError::NotLeader { leader_hint: None })
    );
    // Batches are answered one by one.
    let outs = f.step(Input::ProposeBatch(vec![
        Proposal {
            request: 10,
            data: Bytes::new(),
        },
        Proposal {
            request: 11,
            data: Bytes::new(),
        },
    ]));
    let answered: Vec<u64> = outs
        .iter()
        .filter_map(|o| match o {
            Output::Proposed {
                request,
                result: Err(ProposeError::NotLeader { .. }),
            } => Some(*request),
            _ => None,
        })
        .collect();
    assert_eq!(answered, vec![10, 11]);
}

#[test]
fn oversized_proposal_is_too_large() {
    let mut c = Cluster::with_config(3, 4, |c| c.max_proposal_bytes = 10);
    assert!(c.elect(1));
    let mut n = c.node(1).clone();
    let last = n.last_log_id();
    let before = format!("{n:?}");
    assert_eq!(
        propose(&mut n, 1, Bytes::from(vec![0u8; 11])),
        Err(ProposeError::TooLarge { size: 11, max: 10 })
    );
    assert_eq!(format!("{n:?}"), before);
    assert_eq!(n.last_log_id(), last);
    assert_eq!(
        propose(&mut n, 2, Bytes::from(vec![0u8; 10])),
        Ok(lid(last.term, last.index + 1))
    );
}

fn cluster_propose(
    c: &mut Cluster,
    id: NodeId,
    request: u64,
    data: Bytes,
) -> Result<LogId, ProposeError> {
    c.step(id, Input::Propose(Proposal { request, data }));
    c.trace
        .iter()
        .rev()
        .find_map(|(n, o)| match o {
            Output::Proposed { request: r, result } if *n == id && *r == request => Some(*result),
            _ => None,
        })
        .expect("every proposal is answered")
}

#[test]
fn uncommitted_limit_overloads_and_recovers_after_commit() {
    let mut c = Cluster::with_config(3, 4, |c| c.max_uncommitted_bytes = 200);
    assert!(c.elect(1));
    assert_eq!(c.node(1).commit_index(), 1);
    // Cut the followers off: nothing more commits.
    c.isolate(1);
    let big = Bytes::from(vec![1u8; 100]);
    assert_eq!(cluster_propose(&mut c, 1, 1, big.clone()), Ok(lid(1, 2)));
    let r = cluster_propose(&mut c, 1, 2, big.clone());
    assert!(
        matches!(r, Err(ProposeError::Overloaded { max: 200, uncommitted }) if uncommitted >= 100),
        "{r:?}"
    );
    assert_eq!(
        c.node(1).last_log_id(),
        lid(1, 2),
        "refused entry not appended"
    );
    // Still overloaded while cut off.
    c.deliver_all();
    let r = cluster_propose(&mut c, 1, 3, big.clone());
    assert!(matches!(r, Err(ProposeError::Overloaded { .. })), "{r:?}");
    // Heal; heartbeats let the followers catch up and the entry commit.
    c.heal();
    for _ in 0..6 {
        c.tick(1);
        c.deliver_all();
    }
    assert_eq!(c.node(1).role(), Role::Leader);
    assert_eq!(
        c.node(1).commit_index(),
        2,
        "the entry committed after healing"
    );
    assert_eq!(cluster_propose(&mut c, 1, 4, big.clone()), Ok(lid(1, 3)));
    assert_eq!(
        cluster_propose(&mut c, 1, 5, big),
        Err(ProposeError::Overloaded {
            uncommitted: 124,
            max: 200
        })
    );
}
