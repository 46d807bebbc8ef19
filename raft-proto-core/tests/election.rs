mod common;

// Leader election (Raft paper sections 5.2 and 5.4.1), PreVote and CheckQuorum.
//
// The first tests drive one `RaftNode` by hand with the RequestVote receiver rules of Figure 2;
// the rest run small clusters on the in-memory harness.

use std::collections::BTreeMap;

use bytes::Bytes;
use common::Cluster;
use raft_proto_core::message::{
    AppendEntries, AppendEntriesResponse, AppendResult, Heartbeat, HeartbeatResponse, RequestVote,
    RequestVoteResponse,
};
use raft_proto_core::{
    Config, Entry, EntryKind, Event, HardState, Index, Input, LogId, Message, NodeId, Output,
    Proposal, ProposeError, RaftNode, RecoveredState, Role, Term, NO_NODE,
};

// ----- helpers for driving a single node -----

fn entries(terms: &[Term]) -> Vec<Entry> {
    terms
        .iter()
        .enumerate()
        .map(|(i, &term)| Entry {
            term,
            index: i as Index + 1,
            kind: EntryKind::Normal,
            data: Bytes::from(format!("{}@{term}", i + 1)),
        })
        .collect()
}

fn id(index: Index, term: Term) -> LogId {
    LogId { term, index }
}

/// Node `me` of `voters` recovered at `term` (no vote) with a log of `terms`.
fn node(
    me: NodeId,
    voters: &[NodeId],
    term: Term,
    terms: &[Term],
    tweak: impl FnOnce(&mut Config),
) -> RaftNode {
    let mut cfg = Config::new(me, voters.to_vec());
    tweak(&mut cfg);
    let rec = RecoveredState {
        hard_state: hs(term, NO_NODE),
        snapshot: None,
        entries: entries(terms),
    };
    RaftNode::new(cfg, rec).expect("valid recovered state")
}

fn recv(from: NodeId, msg: Message) -> Input {
    Input::Receive { from, msg }
}

fn request_vote(term: Term, last_log: LogId) -> Message {
    Message::RequestVote(RequestVote {
        term,
        pre_vote: false,
        last_log,
        transfer: false,
    })
}

fn answer(term: Term, pre_vote: bool, granted: bool) -> RequestVoteResponse {
    RequestVoteResponse {
        term,
        pre_vote,
        granted,
    }
}

fn vote_response(term: Term, pre_vote: bool, granted: bool) -> Message {
    Message::RequestVoteResponse(answer(term, pre_vote, granted))
}

fn hs(term: Term, vote: NodeId) -> HardState {
    HardState {
        term,
        vote,
        commit: 0,
    }
}

/// The (role, term) changes node `n` went through, in order.
fn role_changes(c: &Cluster, n: NodeId) -> Vec<(Role, Term)> {
    c.trace
        .iter()
        .filter_map(|(who, o)| match o {
            Output::Event(Event::RoleChanged { role, term }) if *who == n => Some((*role, *term)),
            _ => None,
        })
        .collect()
}

/// The vote answers sent to `to`.
fn votes_to(outs: &[Output], to: NodeId) -> Vec<RequestVoteResponse> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Send {
                to: t,
                msg: Message::RequestVoteResponse(r),
            } if *t == to => Some(*r),
            _ => None,
        })
        .collect()
}

fn last_write_seq(outs: &[Output]) -> Option<u64> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Persist(w) => Some(w.seq),
            _ => None,
        })
        .max()
}

fn written_hard_state(outs: &[Output]) -> Option<HardState> {
    outs.iter().rev().find_map(|o| match o {
        Output::Persist(w) => w.hard_state,
        _ => None,
    })
}

/// Steps `input`, then reports every write durable (repeatedly) and returns all outputs.
fn step_durably(n: &mut RaftNode, input: Input) -> Vec<Output> {
    let mut all = n.step(input);
    let mut from = 0;
    while let Some(seq) = last_write_seq(&all[from..]) {
        from = all.len();
        all.extend(n.step(Input::Persisted { seq }));
    }
    all
}

/// Ticks `n` into a pre-vote and hands it the (pre-)votes of `grantors` until it leads.
fn make_leader(n: &mut RaftNode, grantors: &[NodeId]) {
    while n.role() == Role::Follower {
        step_durably(n, Input::Tick);
    }
    let term = n.term() + 1;
    for &g in grantors {
        step_durably(n, recv(g, vote_response(term, true, true)));
    }
    for &g in grantors {
        step_durably(n, recv(g, vote_response(term, false, true)));
    }
    assert_eq!((n.role(), n.term()), (Role::Leader, term));
}

// ----- Figure 2, RequestVote receiver -----

#[test]
fn vote_request_with_a_stale_term_gets_no_vote() {
    let mut v = node(1, &[1, 2, 3], 5, &[1, 1, 2], |_| {});
    // The candidate's log is far ahead, but its term is behind.
    let outs = v.step(recv(2, request_vote(4, id(9, 4))));
    assert!(
        votes_to(&outs, 2).iter().all(|r| !r.granted && r.term == 5),
        "rule 1: reply false if term < currentTerm, got {outs:?}"
    );
    assert_eq!(v.hard_state(), hs(5, NO_NODE));
    assert!(last_write_seq(&outs).is_none());

    // A stale pre-vote is answered explicitly, with the newer term.
    let pre = Message::RequestVote(RequestVote {
        term: 4,
        pre_vote: true,
        last_log: id(9, 4),
        transfer: false,
    });
    let outs = v.step(recv(3, pre));
    assert_eq!(votes_to(&outs, 3), vec![answer(5, true, false)]);
}

#[test]
fn one_vote_per_term_granted_only_once_durable() {
    let mut v = node(1, &[1, 2, 3], 5, &[1, 1, 2], |_| {});
    let outs = v.step(recv(2, request_vote(5, id(3, 2))));
    assert_eq!(written_hard_state(&outs), Some(hs(5, 2)));
    assert!(
        votes_to(&outs, 2).is_empty(),
        "held until the vote is durable"
    );
    let seq = last_write_seq(&outs).expect("vote written");
    let granted = answer(5, false, true);
    let outs = v.step(Input::Persisted { seq });
    assert_eq!(votes_to(&outs, 2), vec![granted]);

    // Another candidate of the same term is refused, however good its log.
    let outs = v.step(recv(3, request_vote(5, id(10, 5))));
    assert_eq!(votes_to(&outs, 3), vec![answer(5, false, false)]);
    // The same candidate asking again (a retransmission) gets the same answer.
    let outs = v.step(recv(2, request_vote(5, id(3, 2))));
    assert_eq!(votes_to(&outs, 2), vec![granted]);
    assert_eq!(v.hard_state().vote, 2);

    // A new term frees the vote.
    let outs = step_durably(&mut v, recv(3, request_vote(6, id(3, 2))));
    assert_eq!(v.hard_state(), hs(6, 3));
    assert!(votes_to(&outs, 3).iter().any(|r| r.granted && r.term == 6));
}

#[test]
fn vote_requires_a_log_at_least_as_up_to_date_by_last_term_then_index() {
    // The voter's log ends at (index 4, term 2).
    let cases = [
        (id(4, 2), true, "same last entry"),
        (id(5, 2), true, "same last term, longer"),
        (id(3, 2), false, "same last term, shorter"),
        (id(1, 3), true, "higher last term wins even when shorter"),
        (id(9, 1), false, "lower last term loses even when longer"),
        (id(0, 0), false, "empty log"),
    ];
    for (last_log, expect, why) in cases {
        let mut v = node(1, &[1, 2, 3], 2, &[1, 1, 2, 2], |_| {});
        let outs = step_durably(&mut v, recv(2, request_vote(3, last_log)));
        let answers = votes_to(&outs, 2);
        assert_eq!(answers.len(), 1, "{why}");
        assert_eq!(answers[0].granted, expect, "{why}");
        // The request's term is adopted either way; the vote only when granted.
        let vote = if expect { 2 } else { NO_NODE };
        assert_eq!(v.hard_state(), hs(3, vote), "{why}");
    }
}

// ----- Figure 2, all servers: a higher term converts to follower -----

#[test]
fn any_message_with_a_higher_term_turns_a_leader_into_a_follower() {
    let higher: [(&str, Message, Option<NodeId>); 5] = [
        (
            "AppendEntries",
            Message::AppendEntries(AppendEntries {
                term: 9,
                prev: id(0, 0),
                entries: vec![],
                commit: 0,
            }),
            Some(2),
        ),
        (
            "Heartbeat",
            Message::Heartbeat(Heartbeat { term: 9, commit: 0 }),
            Some(2),
        ),
        (
            "AppendEntriesResponse",
            Message::AppendEntriesResponse(AppendEntriesResponse {
                term: 9,
                result: AppendResult::Reject {
                    rejected: 3,
                    hint: id(0, 0),
                },
            }),
            None,
        ),
        (
            "HeartbeatResponse",
            Message::HeartbeatResponse(HeartbeatResponse { term: 9 }),
            None,
        ),
        ("RequestVoteResponse", vote_response(9, false, false), None),
    ];
    for (what, msg, leader) in higher {
        let mut n = node(1, &[1, 2, 3], 2, &[1, 2], |_| {});
        make_leader(&mut n, &[3]);
        assert_eq!(n.term(), 3);
        let outs = n.step(recv(2, msg));
        assert_eq!((n.role(), n.term()), (Role::Follower, 9), "{what}");
        assert_eq!(n.leader_hint(), leader, "{what}");
        assert_eq!(
            n.hard_state().vote,
            NO_NODE,
            "{what}: a new term has no vote yet"
        );
        assert!(
            outs.contains(&Output::Event(Event::RoleChanged {
                role: Role::Follower,
                term: 9
            })),
            "{what}"
        );
        assert_eq!(written_hard_state(&outs).map(|h| h.term), Some(9), "{what}");
    }

    // RequestVote is the exception: a leader holds its lease (see the stickiness test), with
    // or without CheckQuorum, unless the request follows a transfer it asked for.
    for check_quorum in [true, false] {
        let mut n = node(1, &[1, 2, 3], 2, &[1, 2], |c| c.check_quorum = check_quorum);
        make_leader(&mut n, &[3]);
        let outs = n.step(recv(2, request_vote(9, id(0, 0))));
        assert!(outs.is_empty(), "{outs:?}");
        assert_eq!((n.role(), n.term()), (Role::Leader, 3));
        let transfer = Message::RequestVote(RequestVote {
            term: 9,
            pre_vote: false,
            last_log: id(0, 0),
            transfer: true,
        });
        let outs = step_durably(&mut n, recv(2, transfer));
        assert_eq!((n.role(), n.term()), (Role::Follower, 9));
        assert!(
            votes_to(&outs, 2).iter().all(|r| !r.granted),
            "its log is behind ours"
        );
    }
}

#[test]
fn candidate_that_hears_from_the_leader_of_its_term_follows_it() {
    // A pre-candidate and a candidate both give up when a leader of their term shows itself.
    let heartbeat = |term| recv(2, Message::Heartbeat(Heartbeat { term, commit: 0 }));
    let mut n = node(1, &[1, 2, 3], 2, &[1, 2], |_| {});
    while n.role() == Role::Follower {
        n.step(Input::Tick);
    }
    assert_eq!((n.role(), n.term()), (Role::PreCandidate, 2));
    n.step(heartbeat(2));
    assert_eq!(
        (n.role(), n.term(), n.leader_hint()),
        (Role::Follower, 2, Some(2))
    );

    let mut n = node(1, &[1, 2, 3], 2, &[1, 2], |c| c.pre_vote = false);
    while n.role() == Role::Follower {
        step_durably(&mut n, Input::Tick);
    }
    assert_eq!((n.role(), n.hard_state()), (Role::Candidate, hs(3, 1)));
    n.step(heartbeat(3));
    assert_eq!(
        (n.role(), n.term(), n.leader_hint()),
        (Role::Follower, 3, Some(2))
    );
    assert_eq!(n.hard_state().vote, 1, "its vote in term 3 stands");
    // Late votes of the abandoned election change nothing.
    n.step(recv(3, vote_response(3, false, true)));
    assert_eq!(n.role(), Role::Follower);
}

// ----- Section 5.2 in clusters -----

/// Ticks and delivers until one leader is followed by everyone in its term. Returns it.
fn settle(c: &mut Cluster, rounds: usize) -> Option<NodeId> {
    for _ in 0..rounds {
        c.tick_all();
        c.deliver_all();
        if let [l] = c.leaders()[..] {
            let term = c.node(l).term();
            let all_follow = c.ids.iter().all(|&n| {
                n == l || {
                    let f = c.node(n);
                    f.role() == Role::Follower && f.term() == term && f.leader_hint() == Some(l)
                }
            });
            if all_follow {
                return Some(l);
            }
        }
    }
    None
}

/// Checks the Election Safety property on everything the cluster did: one leader per term.
fn assert_one_leader_per_term(c: &Cluster) {
    let mut leaders: BTreeMap<Term, NodeId> = BTreeMap::new();
    for (who, o) in &c.trace {
        if let Output::Event(Event::RoleChanged {
            role: Role::Leader,
            term,
        }) = o
        {
            let first = *leaders.entry(*term).or_insert(*who);
            assert_eq!(first, *who, "two leaders in term {term}");
        }
    }
}

#[test]
fn three_and_five_node_clusters_elect_exactly_one_leader() {
    for n in [3, 5] {
        for seed in 1..=8 {
            let mut c = Cluster::new(n, seed);
            let l = settle(&mut c, 200).unwrap_or_else(|| panic!("n={n} seed={seed}: no leader"));
            assert_eq!(c.leaders(), vec![l]);
            let term = c.node(l).term();
            // Keep running: nothing changes while the leader is healthy.
            for _ in 0..50 {
                c.tick_all();
                c.deliver_all();
            }
            assert_eq!(c.leaders(), vec![l], "n={n} seed={seed}");
            for id in 1..=n {
                assert_eq!(c.node(id).term(), term, "n={n} seed={seed} node {id}");
            }
            assert_one_leader_per_term(&c);
        }
    }
}

#[test]
fn split_vote_is_resolved_by_a_later_term() {
    // Without PreVote, as in the paper. Nodes 1 and 2 campaign at once; node 3 hears only
    // node 1 and node 4 only node 2 before answering, so each candidate has 2 of 4 votes.
    let mut c = Cluster::with_config(4, 3, |cfg| cfg.pre_vote = false);
    c.cut.insert((1, 4));
    c.cut.insert((2, 3));
    c.fire_election(1);
    c.fire_election(2);
    c.deliver_all();
    assert!(c.leaders().is_empty(), "nobody has 3 of 4 votes");
    for n in [1, 2] {
        assert_eq!((c.node(n).role(), c.node(n).term()), (Role::Candidate, 1));
    }
    assert_eq!(c.node(3).hard_state().vote, 1);
    assert_eq!(c.node(4).hard_state().vote, 2);

    c.heal();
    let l = settle(&mut c, 300).expect("randomized timeouts break the tie");
    assert!(c.node(l).term() >= 2, "term 1 was lost to the split");
    assert_one_leader_per_term(&c);
}

#[test]
fn stale_leader_steps_down_and_its_uncommitted_entry_is_overwritten() {
    let mut c = Cluster::new(5, 7);
    assert!(c.elect(1));
    c.propose(1, 1, b"committed");
    c.deliver_all();
    assert_eq!(c.node(1).commit_index(), 2);

    // Node 1 is cut off; it still believes it leads and accepts a proposal nobody will see.
    c.isolate(1);
    c.propose(1, 2, b"lost");
    c.deliver_all();
    assert_eq!(c.node(1).last_log_id(), id(3, 1));

    // The other four elect a new leader among themselves.
    let mut new = None;
    for _ in 0..200 {
        for n in 2..=5 {
            c.tick(n);
        }
        c.deliver_all();
        new = (2..=5).find(|&n| c.node(n).role() == Role::Leader);
        if new.is_some() {
            break;
        }
    }
    let new = new.expect("the majority side elects a leader");
    let term = c.node(new).term();
    assert!(term > 1);
    assert_eq!(
        (c.node(1).role(), c.node(1).term()),
        (Role::Leader, 1),
        "unaware so far"
    );
    c.propose(new, 3, b"kept");
    c.deliver_all();

    // Healed: the old leader hears the new term at the first heartbeat and follows.
    c.heal();
    c.tick(new);
    c.tick(new);
    c.deliver_all();
    let old = c.node(1);
    assert_eq!(
        (old.role(), old.term(), old.leader_hint()),
        (Role::Follower, term, Some(new))
    );
    assert!(c
        .trace
        .iter()
        .any(|(n, o)| *n == 1 && matches!(o, Output::ProposalUnknown { request: 2, .. })));
    for i in 1..=c.node(new).last_log_id().index {
        assert_eq!(c.node(1).entry(i), c.node(new).entry(i), "index {i}");
    }
    assert_ne!(
        c.node(1).entry(3).map(|e| e.term),
        Some(1),
        "\"lost\" was overwritten"
    );

    c.tick(new);
    c.tick(new);
    c.deliver_all();
    for n in 1..=5 {
        let data: Vec<Bytes> = c.applied_data(n).into_iter().map(|d| d.2).collect();
        assert!(data.contains(&Bytes::from_static(b"kept")), "node {n}");
        assert!(!data.contains(&Bytes::from_static(b"lost")), "node {n}");
    }
}

// ----- PreVote -----

/// Node 3 of a 3-node cluster led by node 1 is partitioned for 200 ticks while node 1 keeps
/// committing, then the partition heals. Returns the cluster and the term before the partition.
fn partition_node_3(pre_vote: bool) -> (Cluster, Term) {
    let mut c = Cluster::with_config(3, 3, |cfg| cfg.pre_vote = pre_vote);
    assert!(c.elect(1));
    let term = c.node(1).term();
    c.isolate(3);
    for round in 0..200u64 {
        if round % 20 == 0 {
            c.propose(1, round, b"cmd");
        }
        c.tick_all();
        c.deliver_all();
        assert_eq!(
            (c.leaders(), c.node(1).term()),
            (vec![1], term),
            "round {round}"
        );
    }
    (c, term)
}

#[test]
fn prevote_keeps_a_partitioned_node_from_raising_its_term_or_disrupting() {
    let (mut c, term) = partition_node_3(true);
    assert_eq!(c.node(3).term(), term, "pre-votes do not raise the term");
    let changes = role_changes(&c, 3);
    assert!(changes.contains(&(Role::PreCandidate, term)));
    assert!(changes.iter().all(|&(role, _)| role != Role::Candidate));

    c.heal();
    let before = role_changes(&c, 1);
    for _ in 0..100 {
        c.tick_all();
        c.deliver_all();
        assert_eq!((c.leaders(), c.node(1).term()), (vec![1], term));
    }
    assert_eq!(role_changes(&c, 1), before, "the leader was not disturbed");
    let f = c.node(3);
    assert_eq!(
        (f.role(), f.term(), f.leader_hint()),
        (Role::Follower, term, Some(1))
    );
    assert_eq!(f.commit_index(), c.node(1).commit_index(), "caught up");
}

#[test]
fn without_prevote_a_partitioned_node_raises_its_term_and_disrupts_on_return() {
    let (mut c, term) = partition_node_3(false);
    let t3 = c.node(3).term();
    assert!(
        t3 > term + 5,
        "node 3 campaigned on every timeout: term {t3}"
    );

    c.heal();
    let l = settle(&mut c, 300).expect("a leader again");
    assert!(
        c.node(l).term() > t3,
        "the old leader was deposed by node 3's term"
    );
    assert_ne!(l, 3, "node 3 missed committed entries and cannot win");
    assert_one_leader_per_term(&c);
}

// ----- CheckQuorum -----

#[test]
fn check_quorum_leader_cut_off_from_everyone_steps_down() {
    let mut c = Cluster::new(3, 5);
    assert!(c.elect(1));
    let term = c.node(1).term();
    c.isolate(1);
    let mut ticks = 0;
    while c.node(1).role() == Role::Leader {
        c.tick(1);
        c.deliver_all();
        ticks += 1;
        assert!(ticks <= 20, "still leading after two election timeouts");
    }
    assert!(
        ticks > 10,
        "one full timeout of silence is needed, stepped down after {ticks}"
    );
    let n = c.node(1);
    assert_eq!(
        (n.role(), n.term(), n.leader_hint()),
        (Role::Follower, term, None)
    );
    assert!(c
        .trace
        .iter()
        .any(|(n, o)| *n == 1 && *o == Output::Event(Event::CheckQuorumFailed { term })));

    c.propose(1, 1, b"x");
    let refused = Output::Proposed {
        request: 1,
        result: Err(ProposeError::NotLeader { leader_hint: None }),
    };
    assert_eq!(c.trace.last().map(|t| &t.1), Some(&refused));
}

#[test]
fn check_quorum_leader_with_a_quorum_keeps_leading() {
    let mut c = Cluster::new(3, 5);
    assert!(c.elect(1));
    let term = c.node(1).term();
    c.isolate(3); // node 2 alone is enough for a quorum with the leader
    for _ in 0..100 {
        c.tick_all();
        c.deliver_all();
    }
    assert_eq!((c.leaders(), c.node(1).term()), (vec![1], term));
    assert!(!c
        .trace
        .iter()
        .any(|(_, o)| matches!(o, Output::Event(Event::CheckQuorumFailed { .. }))));
}

#[test]
fn follower_that_recently_heard_the_leader_ignores_higher_term_vote_requests() {
    let heartbeat = || recv(2, Message::Heartbeat(Heartbeat { term: 2, commit: 0 }));
    let mut f = node(1, &[1, 2, 3], 2, &[1, 1, 2], |_| {});
    f.step(heartbeat());
    assert_eq!(f.leader_hint(), Some(2));

    // Node 3 has an up-to-date log and a higher term, but node 1 is within its lease.
    let outs = f.step(recv(3, request_vote(3, id(3, 2))));
    assert!(
        outs.is_empty(),
        "ignored: no answer, no write, got {outs:?}"
    );
    assert_eq!(f.hard_state(), hs(2, NO_NODE));
    for _ in 0..9 {
        f.step(Input::Tick);
    }
    assert!(
        f.step(recv(3, request_vote(3, id(3, 2)))).is_empty(),
        "9 ticks: still leased"
    );

    // A full election timeout without the leader: the request is considered and granted.
    f.step(Input::Tick);
    let outs = step_durably(&mut f, recv(3, request_vote(3, id(3, 2))));
    assert!(votes_to(&outs, 3).iter().any(|r| r.granted));
    assert_eq!(f.hard_state(), hs(3, 3));

    // Without CheckQuorum the lease holds as well (thesis 4.2.3: it is what keeps a removed
    // node from disrupting members that still count it as a voter).
    let mut f = node(1, &[1, 2, 3], 2, &[1, 1, 2], |c| c.check_quorum = false);
    f.step(heartbeat());
    assert!(f.step(recv(3, request_vote(3, id(3, 2)))).is_empty());
    for _ in 0..10 {
        f.step(Input::Tick);
    }
    let outs = step_durably(&mut f, recv(3, request_vote(3, id(3, 2))));
    assert!(votes_to(&outs, 3).iter().any(|r| r.granted));
}

// ----- Section 5.4: election restriction and Leader Completeness -----

#[test]
fn node_missing_a_committed_entry_cannot_win() {
    for pre_vote in [true, false] {
        // No leases: votes are decided by the logs alone.
        let mut c = Cluster::with_config(3, 11, |cfg| {
            cfg.check_quorum = false;
            cfg.pre_vote = pre_vote;
        });
        assert!(c.elect(1));
        c.cut.insert((1, 3));
        c.cut.insert((3, 1));
        c.propose(1, 1, b"a");
        c.deliver_all();
        assert_eq!(c.node(1).commit_index(), 2, "committed by nodes 1 and 2");
        assert_eq!(c.node(3).last_log_id().index, 1);

        // The leader crashes; node 3 campaigns again and again, but node 2 refuses it.
        c.isolate(1);
        for _ in 0..100 {
            c.tick(3);
            c.deliver_all();
            assert_ne!(c.node(3).role(), Role::Leader, "pre_vote={pre_vote}");
        }
        assert_ne!(c.node(2).hard_state().vote, 3, "pre_vote={pre_vote}");

        // Once node 2 campaigns too, it wins, and it has the committed entry.
        let mut leader = None;
        for _ in 0..200 {
            c.tick(2);
            c.tick(3);
            c.deliver_all();
            leader = c.leaders().into_iter().find(|&n| n != 1);
            if leader.is_some() {
                break;
            }
        }
        assert_eq!(leader, Some(2), "pre_vote={pre_vote}");
        assert_eq!(
            c.node(2).entry(2).map(|e| e.data.clone()),
            Some(Bytes::from_static(b"a"))
        );
    }
}

/// xorshift64: a tiny deterministic generator for the randomized test below.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Delivers everything in a random order, losing about 1 message in 20 and duplicating
/// about 1 in 20.
fn deliver_shuffled(c: &mut Cluster, rng: &mut Rng) {
    for _ in 0..100_000 {
        if c.net.is_empty() {
            return;
        }
        let k = rng.below(c.net.len() as u64) as usize;
        let (from, to, msg) = c.net.remove(k).expect("in range");
        match rng.below(20) {
            0 => continue,
            1 => c.net.push_back((from, to, msg.clone())),
            _ => {}
        }
        if !c.cut.contains(&(from, to)) {
            c.step(to, Input::Receive { from, msg });
        }
    }
    panic!("network did not quiesce");
}

#[test]
fn leader_completeness_under_random_partitions_and_crashes() {
    // Messages are reordered, lost and duplicated. Odd seeds: every write is durable at once.
    // Even seeds: writes become durable only at random moments, and a crash loses whatever was
    // not durable yet.
    for seed in 1..=16u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut c = Cluster::new(5, seed);
        c.auto_persist = seed % 2 == 1;
        // Every index some node has reported committed: its (term, payload), and the highest
        // term any node had when it was first seen (the commit happened in that term or earlier,
        // so every leader of a later term must hold the entry).
        let mut committed: BTreeMap<Index, ((Term, Bytes), Term)> = BTreeMap::new();
        let mut request = 0;
        for step in 0..400 {
            match rng.below(100) {
                0..=3 => c.heal(),
                4..=7 => {
                    let n = rng.below(5) + 1;
                    c.isolate(n);
                }
                8 | 9 => {
                    let n = rng.below(5) + 1;
                    c.restart(n);
                }
                _ => {}
            }
            if step % 3 == 0 {
                for l in c.leaders() {
                    request += 1;
                    let data = Bytes::from(format!("s{seed} r{request}"));
                    c.step(l, Input::Propose(Proposal { request, data }));
                }
            }
            c.tick_all();
            deliver_shuffled(&mut c, &mut rng);
            for n in c.ids.clone() {
                if rng.below(3) != 0 {
                    c.persist_all(n);
                }
            }

            let max_term = c.ids.iter().map(|&n| c.node(n).term()).max().unwrap_or(0);
            for n in c.ids.clone() {
                let node = c.node(n);
                for i in 1..=node.commit_index() {
                    let e = node.entry(i).expect("committed entries are in the log");
                    let now = (e.term, e.data.clone());
                    let first = committed
                        .entry(i)
                        .or_insert_with(|| (now.clone(), max_term));
                    assert_eq!(
                        first.0, now,
                        "seed {seed} step {step}: index {i} committed twice"
                    );
                }
            }
            for l in c.leaders() {
                let lt = c.node(l).term();
                for (i, (entry, seen_in)) in &committed {
                    if lt <= *seen_in {
                        continue; // possibly a stale leader from before that commit
                    }
                    let e = c.node(l).entry(*i).map(|e| (e.term, e.data.clone()));
                    assert_eq!(
                        e.as_ref(),
                        Some(entry),
                        "seed {seed} step {step}: leader {l} of term {lt} lacks committed index {i}"
                    );
                }
            }
        }
        assert_one_leader_per_term(&c);
        c.heal();
        c.auto_persist = true;
        for n in c.ids.clone() {
            c.persist_all(n);
        }
        assert!(
            settle(&mut c, 300).is_some(),
            "seed {seed}: healed cluster elects"
        );
        assert!(
            committed.len() > 5,
            "seed {seed}: the run committed something"
        );
    }
}
