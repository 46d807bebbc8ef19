//! The durability contract: promises (vote grants, append acknowledgements, a candidate's own
//! vote, a leader's own log) wait for `Input::Persisted`.

mod common;

use bytes::Bytes;
use common::Cluster;
use raft_proto_core::message::{
    AppendEntries, AppendEntriesResponse, AppendResult, HeartbeatResponse, RequestVote,
    RequestVoteResponse,
};
use raft_proto_core::{
    Config, Entry, EntryKind, Event, HardState, Input, LogId, Message, NodeId, Output,
    PersistWrite, Proposal, RaftNode, RecoveredState, Role,
};

// ----- helpers -----

fn fresh(id: NodeId, voters: &[NodeId]) -> RaftNode {
    RaftNode::new(Config::new(id, voters.to_vec()), RecoveredState::default()).expect("valid")
}

fn ent(term: u64, index: u64, data: &'static [u8]) -> Entry {
    Entry {
        term,
        index,
        kind: if data.is_empty() {
            EntryKind::Noop
        } else {
            EntryKind::Normal
        },
        data: Bytes::from_static(data),
    }
}

fn request_vote(term: u64, last_term: u64, last_index: u64) -> Message {
    Message::RequestVote(RequestVote {
        term,
        pre_vote: false,
        last_log: LogId {
            term: last_term,
            index: last_index,
        },
        transfer: false,
    })
}

fn append(term: u64, prev: (u64, u64), entries: Vec<Entry>, commit: u64) -> Message {
    Message::AppendEntries(AppendEntries {
        term,
        prev: LogId {
            term: prev.0,
            index: prev.1,
        },
        entries,
        commit,
    })
}

fn recv(from: NodeId, msg: Message) -> Input {
    Input::Receive { from, msg }
}

fn persists(outs: &[Output]) -> Vec<PersistWrite> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Persist(w) => Some(w.clone()),
            _ => None,
        })
        .collect()
}

/// `(to, granted)` of every real (non-pre) vote response sent.
fn vote_replies(outs: &[Output]) -> Vec<(NodeId, bool)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Send {
                to,
                msg: Message::RequestVoteResponse(r),
            } if !r.pre_vote => Some((*to, r.granted)),
            _ => None,
        })
        .collect()
}

/// Match indexes of every successful append acknowledgement sent.
fn success_acks(outs: &[Output]) -> Vec<u64> {
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

fn applied_entries(outs: &[Output]) -> Vec<Entry> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Apply { entries } => Some(entries.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn net_vote_replies(c: &Cluster, to: NodeId) -> Vec<(NodeId, bool)> {
    c.net
        .iter()
        .filter_map(|(from, t, m)| match m {
            Message::RequestVoteResponse(r) if *t == to && !r.pre_vote => Some((*from, r.granted)),
            _ => None,
        })
        .collect()
}

// ----- (a) vote grants wait for the vote to be durable -----

#[test]
fn vote_grant_is_held_until_the_vote_write_is_persisted() {
    let mut n = fresh(2, &[1, 2, 3]);
    // A higher-term answer from node 3 moves node 2 to term 1: write seq 1.
    let outs = n.step(recv(
        3,
        Message::HeartbeatResponse(HeartbeatResponse { term: 1 }),
    ));
    let w1 = persists(&outs);
    assert_eq!(w1.len(), 1, "term change must be written: {outs:?}");
    assert_eq!(w1[0].seq, 1);

    // Node 1 asks for a vote in term 2: node 2 will grant it.
    let outs = n.step(recv(1, request_vote(2, 0, 0)));
    let w2 = persists(&outs);
    assert_eq!(w2.len(), 1, "vote must be written: {outs:?}");
    assert_eq!(w2[0].seq, 2);
    assert_eq!(
        w2[0].hard_state,
        Some(HardState {
            term: 2,
            vote: 1,
            commit: 0
        })
    );
    assert!(
        vote_replies(&outs).is_empty(),
        "no vote reply before durability: {outs:?}"
    );
    assert_eq!(n.status().vote, 1);

    // Ticks do not release it.
    for _ in 0..3 {
        let outs = n.step(Input::Tick);
        assert!(vote_replies(&outs).is_empty(), "{outs:?}");
    }
    // An earlier write becoming durable does not release it either.
    let outs = n.step(Input::Persisted { seq: 1 });
    assert!(
        vote_replies(&outs).is_empty(),
        "grant released by seq 1 although it depends on seq 2: {outs:?}"
    );
    // The vote write becoming durable releases exactly one grant to node 1.
    let outs = n.step(Input::Persisted { seq: 2 });
    assert_eq!(vote_replies(&outs), vec![(1, true)], "{outs:?}");
    let granted_term = outs.iter().find_map(|o| match o {
        Output::Send {
            msg: Message::RequestVoteResponse(RequestVoteResponse { term, .. }),
            ..
        } => Some(*term),
        _ => None,
    });
    assert_eq!(granted_term, Some(2));
}

// ----- (b) append acknowledgements wait for the entries to be durable -----

#[test]
fn append_ack_is_held_until_entries_are_persisted() {
    let mut n = fresh(2, &[1, 2, 3]);
    let outs = n.step(recv(
        1,
        append(1, (0, 0), vec![ent(1, 1, b""), ent(1, 2, b"a")], 0),
    ));
    let w = persists(&outs);
    assert_eq!(w.len(), 1, "{outs:?}");
    assert_eq!(w[0].entries.len(), 2);
    assert_eq!(w[0].entries[1].data, Bytes::from_static(b"a"));
    assert!(
        success_acks(&outs).is_empty(),
        "ack before Persisted: {outs:?}"
    );
    let seq1 = w[0].seq;

    // A second append (entry 3, commit 2) before the first write is durable.
    let outs = n.step(recv(1, append(1, (1, 2), vec![ent(1, 3, b"b")], 2)));
    let w = persists(&outs);
    assert_eq!(w.len(), 1, "{outs:?}");
    let seq2 = w[0].seq;
    assert!(seq2 > seq1);
    assert!(
        success_acks(&outs).is_empty(),
        "ack before Persisted: {outs:?}"
    );
    assert!(
        applied_entries(&outs).is_empty(),
        "nothing is durable locally yet, nothing may be applied: {outs:?}"
    );
    assert_eq!(n.status().persisted, 0);

    // First write durable: only the ack for it, with match index 2; entries 1..=2 applied.
    let outs = n.step(Input::Persisted { seq: seq1 });
    assert_eq!(success_acks(&outs), vec![2], "{outs:?}");
    assert_eq!(n.status().persisted, 2);
    let applied: Vec<u64> = applied_entries(&outs).iter().map(|e| e.index).collect();
    assert_eq!(applied, vec![1, 2]);

    // Second write durable: the ack with match index 3.
    let outs = n.step(Input::Persisted { seq: seq2 });
    assert_eq!(success_acks(&outs), vec![3], "{outs:?}");
    assert_eq!(n.status().persisted, 3);
}

// ----- (c) a candidate's own vote counts only once durable -----

#[test]
fn candidate_does_not_lead_before_its_own_vote_is_durable() {
    let mut c = Cluster::new(3, 11);
    c.auto_persist = false;
    c.fire_election(1);
    c.deliver_all();
    assert_eq!(c.node(1).role(), Role::Candidate, "pre-vote should succeed");
    assert_eq!(c.node(1).term(), 1);
    assert!(
        !c.disks[&1].pending.is_empty(),
        "term/vote write must be pending"
    );
    // Both peers grant durably.
    c.persist_all(2);
    c.persist_all(3);
    assert_eq!(net_vote_replies(&c, 1), vec![(2, true), (3, true)]);
    c.deliver_all();
    assert_ne!(
        c.node(1).role(),
        Role::Leader,
        "node 1 leads term 1 while its own term/vote write is not durable"
    );
    assert_eq!(c.node(1).role(), Role::Candidate);
    c.persist_all(1);
    assert_eq!(c.node(1).role(), Role::Leader);
    assert_eq!(c.node(1).term(), 1);
}

/// Why (c) matters: a node that led a term before its term was durable can crash, come back at
/// the older term, win the same term again and write different entries under the same
/// (term, index), so two nodes commit different entries at one index.
#[test]
fn leading_before_term_is_durable_does_not_fork_the_committed_log() {
    let mut c = Cluster::new(3, 11);
    c.auto_persist = false;
    c.fire_election(1);
    c.deliver_all();
    c.persist_all(2);
    c.persist_all(3);
    // Node 3 gets no appends from node 1.
    c.cut.insert((1, 3));
    c.deliver_all();
    // If node 1 leads now (without its own durable term), replicate "A" to node 2.
    c.propose(1, 1, b"A");
    c.deliver_all();
    c.persist_all(2);
    c.deliver_all();
    // Node 1 crashes before any of its writes are durable.
    c.restart(1);
    c.net.clear();
    // Node 2 is partitioned away; node 1 campaigns with node 3.
    c.heal();
    c.isolate(2);
    c.fire_election(1);
    c.deliver_all();
    c.persist_all(1);
    c.persist_all(3);
    c.deliver_all();
    c.persist_all(1);
    c.deliver_all();
    if c.node(1).role() == Role::Leader {
        c.propose(1, 2, b"B");
        for _ in 0..4 {
            c.deliver_all();
            c.persist_all(1);
            c.persist_all(3);
            c.deliver_all();
        }
    }
    // Heal and let everything settle.
    c.heal();
    for _ in 0..20 {
        c.tick_all();
        c.deliver_all();
        for id in 1..=3 {
            c.persist_all(id);
        }
        c.deliver_all();
    }
    let min_commit = (1..=3).map(|id| c.node(id).commit_index()).min().unwrap();
    assert!(min_commit >= 2, "the scenario must commit \"B\" everywhere");
    for i in 1..=min_commit {
        let e1 = c.node(1).entry(i).cloned();
        for id in 2..=3 {
            let e = c.node(id).entry(i).cloned();
            assert_eq!(
                e, e1,
                "committed entry {i}: node {id} has {e:?}, node 1 has {e1:?}"
            );
        }
    }
    let a1 = c.applied_data(1);
    for id in 2..=3 {
        let a = c.applied_data(id);
        let k = a.len().min(a1.len());
        assert_eq!(a[..k], a1[..k], "applied sequences of 1 and {id} diverge");
    }
}

// ----- (d) a leader counts its own log only once durable -----

#[test]
fn leader_does_not_commit_until_its_own_write_is_durable() {
    let mut c = Cluster::new(3, 5);
    assert!(c.elect(1));
    assert_eq!(c.node(1).commit_index(), 1, "no-op committed");
    c.auto_persist = false;
    // Node 3 is cut off: only node 2 can acknowledge.
    c.isolate(3);
    c.propose(1, 9, b"x");
    assert_eq!(c.node(1).last_log_id().index, 2);
    c.deliver_all();
    c.persist_all(2);
    c.deliver_all();
    let st = c.node(1).status();
    let p2 = st.peers.iter().find(|p| p.id == 2).expect("peer 2");
    assert_eq!(p2.matched, 2, "node 2's durable ack reached the leader");
    assert_eq!(st.persisted, 1, "leader's own write is still pending");
    assert_eq!(
        c.node(1).commit_index(),
        1,
        "leader + one follower is a majority only if the leader's write is durable"
    );
    assert_eq!(c.applied_data(1).len(), 1, "x must not be applied yet");
    for _ in 0..3 {
        c.tick(1);
        c.deliver_all();
        c.persist_all(2);
        c.deliver_all();
    }
    assert_eq!(c.node(1).commit_index(), 1);
    // The leader's write becomes durable: now 1 and 2 form a majority.
    c.persist_all(1);
    assert_eq!(c.node(1).commit_index(), 2);
    let applied = c.applied_data(1);
    assert_eq!(applied.len(), 2);
    assert_eq!(&applied[1].2[..], b"x");
}

// ----- (e) single node: election and commit follow durability -----

#[test]
fn single_node_leads_and_commits_only_after_persisting() {
    let mut n = fresh(1, &[1]);
    let mut issued = 0;
    let mut all = Vec::new();
    for _ in 0..100 {
        let outs = n.step(Input::Tick);
        for w in persists(&outs) {
            issued = w.seq;
        }
        all.extend(outs);
        if n.role() != Role::Follower {
            break;
        }
    }
    assert_eq!(n.role(), Role::Candidate, "{all:?}");
    assert_eq!(n.term(), 1);
    assert_eq!(issued, 1, "the term/vote write");
    assert!(
        !all.iter().any(|o| matches!(
            o,
            Output::Event(Event::RoleChanged {
                role: Role::Leader,
                ..
            })
        )),
        "{all:?}"
    );
    // More ticks don't help.
    let outs = n.step(Input::Tick);
    assert_ne!(n.role(), Role::Leader, "{outs:?}");

    let outs = n.step(Input::Persisted { seq: 1 });
    assert_eq!(n.role(), Role::Leader, "{outs:?}");
    let w = persists(&outs);
    assert_eq!(w.len(), 1, "the first entry's write: {outs:?}");
    assert_eq!(w[0].entries.len(), 1);
    // The first leader of a new cluster records the initial configuration (in place of the
    // no-op a later leader appends).
    assert_eq!(w[0].entries[0].kind, EntryKind::Config);
    assert_eq!(n.commit_index(), 0, "first entry not durable yet");
    assert!(applied_entries(&outs).is_empty());
    let noop_seq = w[0].seq;

    let outs = n.step(Input::Persisted { seq: noop_seq });
    assert_eq!(n.commit_index(), 1);
    assert_eq!(applied_entries(&outs).len(), 1);

    let outs = n.step(Input::Propose(Proposal {
        request: 42,
        data: Bytes::from_static(b"cmd"),
    }));
    assert!(
        outs.contains(&Output::Proposed {
            request: 42,
            result: Ok(LogId { term: 1, index: 2 })
        }),
        "{outs:?}"
    );
    let w = persists(&outs);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].entries[0].data, Bytes::from_static(b"cmd"));
    assert!(applied_entries(&outs).is_empty(), "{outs:?}");
    assert_eq!(n.commit_index(), 1);
    let seq = w[0].seq;
    for _ in 0..5 {
        let outs = n.step(Input::Tick);
        assert!(applied_entries(&outs).is_empty(), "{outs:?}");
        assert_eq!(n.commit_index(), 1);
    }

    let outs = n.step(Input::Persisted { seq });
    assert_eq!(n.commit_index(), 2);
    let applied = applied_entries(&outs);
    assert_eq!(applied.len(), 1, "{outs:?}");
    assert_eq!(applied[0].index, 2);
    assert_eq!(applied[0].data, Bytes::from_static(b"cmd"));
}

// ----- (f) Persisted for a write never requested -----

#[test]
fn persisted_for_unissued_seq_is_invalid_and_changes_nothing() {
    // A fresh node: nothing issued.
    let mut n = fresh(2, &[1, 2, 3]);
    let before = format!("{n:?}");
    let outs = n.step(Input::Persisted { seq: 1 });
    assert!(
        matches!(&outs[..], [Output::Event(Event::InvalidInput { .. })]),
        "{outs:?}"
    );
    assert_eq!(format!("{n:?}"), before);

    // A node with a held vote grant behind seq 1.
    let outs = n.step(recv(1, request_vote(1, 0, 0)));
    let seq = persists(&outs)[0].seq;
    assert_eq!(seq, 1);
    for bogus in [seq + 1, 1000, u64::MAX] {
        let before = format!("{n:?}");
        let st = n.status();
        let outs = n.step(Input::Persisted { seq: bogus });
        assert!(
            matches!(&outs[..], [Output::Event(Event::InvalidInput { .. })]),
            "Persisted {{ seq: {bogus} }}: {outs:?}"
        );
        assert_eq!(n.status(), st);
        assert_eq!(format!("{n:?}"), before, "Persisted {bogus} changed state");
    }
    // The real report still works and releases the grant.
    let outs = n.step(Input::Persisted { seq });
    assert_eq!(vote_replies(&outs), vec![(1, true)]);
}

// ----- (g) grouped acknowledgements -----

#[test]
fn acknowledging_a_later_seq_covers_earlier_writes() {
    let mut n = fresh(2, &[1, 2, 3]);
    let mut seqs = Vec::new();
    let msgs = [
        append(1, (0, 0), vec![ent(1, 1, b"")], 0),
        append(1, (1, 1), vec![ent(1, 2, b"a")], 1),
        append(1, (1, 2), vec![ent(1, 3, b"b")], 2),
    ];
    for m in msgs {
        let outs = n.step(recv(1, m));
        assert!(success_acks(&outs).is_empty(), "{outs:?}");
        let w = persists(&outs);
        assert_eq!(w.len(), 1);
        seqs.push(w[0].seq);
    }
    assert_eq!(seqs, vec![1, 2, 3]);
    let outs = n.step(Input::Persisted { seq: 3 });
    assert_eq!(success_acks(&outs), vec![1, 2, 3], "{outs:?}");
    assert_eq!(n.status().persisted, 3);
    let applied: Vec<u64> = applied_entries(&outs).iter().map(|e| e.index).collect();
    assert_eq!(applied, vec![1, 2]);
    // Late reports of the covered writes are harmless no-ops.
    for s in [1, 2, 3] {
        let before = format!("{n:?}");
        let outs = n.step(Input::Persisted { seq: s });
        assert!(outs.is_empty(), "Persisted {s} again: {outs:?}");
        assert_eq!(format!("{n:?}"), before);
    }
}

// ----- (h) crash and restart keep a durable vote -----

#[test]
fn durable_vote_survives_restart() {
    let mut c = Cluster::new(3, 3);
    c.auto_persist = false;
    c.step(2, recv(1, request_vote(1, 0, 0)));
    assert!(net_vote_replies(&c, 1).is_empty(), "grant before durable");
    c.persist_all(2);
    assert_eq!(net_vote_replies(&c, 1), vec![(2, true)]);
    c.net.clear();

    c.restart(2);
    let st = c.node(2).status();
    assert_eq!((st.term, st.vote), (1, 1), "vote recovered from disk");
    // Another candidate of the same term is refused.
    c.step(2, recv(3, request_vote(1, 0, 0)));
    c.persist_all(2);
    assert_eq!(net_vote_replies(&c, 3), vec![(2, false)]);
    // The same candidate is granted again.
    c.step(2, recv(1, request_vote(1, 0, 0)));
    c.persist_all(2);
    assert_eq!(net_vote_replies(&c, 1), vec![(2, true)]);
}

#[test]
fn vote_lost_in_crash_was_never_promised() {
    let mut c = Cluster::new(3, 3);
    c.auto_persist = false;
    c.step(2, recv(1, request_vote(1, 0, 0)));
    assert!(net_vote_replies(&c, 1).is_empty());
    // Crash before the vote is durable: no grant ever left, so voting again is fine.
    c.restart(2);
    assert!(net_vote_replies(&c, 1).is_empty());
    let st = c.node(2).status();
    assert_eq!((st.term, st.vote), (0, 0));
    c.step(2, recv(3, request_vote(1, 0, 0)));
    c.persist_all(2);
    assert_eq!(net_vote_replies(&c, 3), vec![(2, true)]);
}
