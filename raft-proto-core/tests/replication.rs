mod common;

// Log replication and commit (Raft paper sections 5.3 and 5.4.2).
//
// The first half drives one `RaftNode` by hand with the AppendEntries receiver and leader rules
// of Figure 2. The second half replays Figure 7 (a leader bringing six divergent followers in
// line) and Figure 8 (why a leader may not count replicas of an entry from an earlier term).

use bytes::Bytes;
use common::Cluster;
use raft_proto_core::message::{
    AppendEntries, AppendEntriesResponse, AppendResult, Heartbeat, HeartbeatResponse,
    RequestVoteResponse,
};
use raft_proto_core::{
    Config, Entry, EntryKind, HardState, Index, Input, LogId, Membership, Message, NodeId, Output,
    PersistWrite, Proposal, RaftNode, RecoveredState, Role, Term, NO_NODE,
};

// ----- helpers for driving a single node -----

/// The entry a log built by `entries` holds at `index` in `term` (same id, same payload).
fn ent(index: Index, term: Term) -> Entry {
    Entry {
        term,
        index,
        kind: EntryKind::Normal,
        data: Bytes::from(format!("{index}@{term}")),
    }
}

/// A log whose entry `i + 1` has term `terms[i]`.
fn entries(terms: &[Term]) -> Vec<Entry> {
    terms
        .iter()
        .enumerate()
        .map(|(i, &t)| ent(i as Index + 1, t))
        .collect()
}

fn id(index: Index, term: Term) -> LogId {
    LogId { term, index }
}

/// Node `me` of `voters`, recovered at `term` with a log of `terms` and commit `commit`.
fn node(me: NodeId, voters: &[NodeId], term: Term, terms: &[Term], commit: Index) -> RaftNode {
    let rec = RecoveredState {
        hard_state: HardState {
            term,
            vote: NO_NODE,
            commit,
        },
        snapshot: None,
        entries: entries(terms),
    };
    RaftNode::new(Config::new(me, voters.to_vec()), rec).expect("valid recovered state")
}

fn recv(from: NodeId, msg: Message) -> Input {
    Input::Receive { from, msg }
}

fn append(term: Term, prev: LogId, entries: Vec<Entry>, commit: Index) -> Message {
    Message::AppendEntries(AppendEntries {
        term,
        prev,
        entries,
        commit,
    })
}

fn ack(term: Term, match_index: Index) -> Message {
    Message::AppendEntriesResponse(AppendEntriesResponse {
        term,
        result: AppendResult::Success { match_index },
    })
}

fn reject(term: Term, rejected: Index, hint: LogId) -> Message {
    Message::AppendEntriesResponse(AppendEntriesResponse {
        term,
        result: AppendResult::Reject { rejected, hint },
    })
}

/// Every message sent to `to`, in order.
fn sent_to(outs: &[Output], to: NodeId) -> Vec<Message> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Send { to: t, msg } if *t == to => Some(msg.clone()),
            _ => None,
        })
        .collect()
}

fn sends(outs: &[Output]) -> usize {
    outs.iter()
        .filter(|o| matches!(o, Output::Send { .. }))
        .count()
}

fn the_write(outs: &[Output]) -> Option<PersistWrite> {
    outs.iter().find_map(|o| match o {
        Output::Persist(w) => Some(w.clone()),
        _ => None,
    })
}

fn appends_to(outs: &[Output], to: NodeId) -> Vec<AppendEntries> {
    sent_to(outs, to)
        .into_iter()
        .filter_map(|m| match m {
            Message::AppendEntries(a) => Some(a),
            _ => None,
        })
        .collect()
}

fn applied(outs: &[Output]) -> Vec<Index> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Apply { entries } => Some(entries.iter().map(|e| e.index)),
            _ => None,
        })
        .flatten()
        .collect()
}

/// Makes `n` win an election with the votes of `grantors`: ticks it into a pre-vote, grants the
/// pre-vote, grants the vote, and persists the candidate's hard state. The leader's no-op is
/// left pending (not durable); its write is returned with everything the node output.
fn campaign(n: &mut RaftNode, grantors: &[NodeId]) -> (Vec<Output>, PersistWrite) {
    let mut outs = Vec::new();
    while n.role() == Role::Follower {
        outs.extend(n.step(Input::Tick));
    }
    assert_eq!(n.role(), Role::PreCandidate);
    let term = n.term() + 1;
    for &g in grantors {
        let r = RequestVoteResponse {
            term,
            pre_vote: true,
            granted: true,
        };
        outs.extend(n.step(recv(g, Message::RequestVoteResponse(r))));
    }
    assert_eq!((n.role(), n.term()), (Role::Candidate, term));
    let vote_write = the_write(&outs).expect("the candidate writes its term and vote");
    for &g in grantors {
        let r = RequestVoteResponse {
            term,
            pre_vote: false,
            granted: true,
        };
        outs.extend(n.step(recv(g, Message::RequestVoteResponse(r))));
    }
    assert_eq!(n.role(), Role::Candidate, "its own vote is not durable yet");
    let won = n.step(Input::Persisted {
        seq: vote_write.seq,
    });
    assert_eq!(n.role(), Role::Leader);
    let noop_write = the_write(&won).expect("the leader writes its no-op");
    outs.extend(won);
    (outs, noop_write)
}

// ----- Figure 2, AppendEntries receiver -----

#[test]
fn append_from_stale_leader_is_answered_with_the_newer_term() {
    let mut f = node(1, &[1, 2, 3], 5, &[1, 1, 2], 0);
    let outs = f.step(recv(2, append(4, id(3, 2), vec![ent(4, 4)], 3)));
    assert_eq!(
        sent_to(&outs, 2),
        vec![Message::HeartbeatResponse(HeartbeatResponse { term: 5 })],
        "rule 1: reply false (here: the newer term) if term < currentTerm"
    );
    assert!(the_write(&outs).is_none(), "nothing is stored");
    assert_eq!(f.last_log_id(), id(3, 2));
    assert_eq!((f.term(), f.commit_index(), f.leader_hint()), (5, 0, None));

    let outs = f.step(recv(
        2,
        Message::Heartbeat(Heartbeat { term: 4, commit: 3 }),
    ));
    assert_eq!(
        sent_to(&outs, 2),
        vec![Message::HeartbeatResponse(HeartbeatResponse { term: 5 })]
    );
    assert_eq!(f.commit_index(), 0);
}

#[test]
fn append_with_missing_or_mismatched_prev_is_rejected_with_a_conflict_hint() {
    // Follower log: index 1..6 with terms 1 1 2 2 2 3; the leader of term 5 probes.
    let mut f = node(1, &[1, 2, 3], 5, &[1, 1, 2, 2, 2, 3], 0);
    let cases = [
        // (prev the leader sends, hint: our last entry at or below prev.index with term <= prev.term)
        (id(8, 4), id(6, 3)), // prev beyond our log
        (id(6, 4), id(6, 3)), // index present, other term
        (id(4, 3), id(4, 2)), // term 2 at index 4 is already <= 3
        (id(5, 1), id(2, 1)), // skip back over the whole term-2 run
        (id(3, 0), id(0, 0)), // nothing of term <= 0: start of the log
    ];
    for (prev, hint) in cases {
        let outs = f.step(recv(2, append(5, prev, vec![ent(prev.index + 1, 5)], 0)));
        let expected = reject(5, prev.index, hint);
        assert_eq!(sent_to(&outs, 2), vec![expected], "prev {prev:?}");
        assert!(the_write(&outs).is_none(), "a rejection stores nothing");
        assert_eq!(f.last_log_id(), id(6, 3), "log untouched");
        assert_eq!(f.leader_hint(), Some(2));
    }
}

#[test]
fn conflicting_entries_are_deleted_and_the_ack_waits_for_durability() {
    let mut f = node(1, &[1, 2, 3], 3, &[1, 1, 2, 2, 2], 0);
    let outs = f.step(recv(2, append(3, id(2, 1), vec![ent(3, 3), ent(4, 3)], 0)));
    let w = the_write(&outs).expect("the new suffix is written");
    assert_eq!(w.truncate_from, Some(3), "entries 3..=5 of term 2 conflict");
    assert_eq!(w.entries, vec![ent(3, 3), ent(4, 3)]);
    assert_eq!(sends(&outs), 0, "the ack promises durable entries: held");
    assert_eq!(f.last_log_id(), id(4, 3));
    assert!(
        f.entry(5).is_none(),
        "the conflicting entry and all that follow are gone"
    );

    let outs = f.step(Input::Persisted { seq: w.seq });
    assert_eq!(sent_to(&outs, 2), vec![ack(3, 4)]);
}

#[test]
fn entries_already_in_the_log_are_not_rewritten() {
    let mut f = node(1, &[1, 2, 3], 2, &[1, 1, 2], 0);
    // A delayed, shorter copy of what we have: no write, and entry 3 survives.
    let outs = f.step(recv(2, append(2, id(0, 0), vec![ent(1, 1), ent(2, 1)], 0)));
    assert!(the_write(&outs).is_none());
    assert_eq!(
        sent_to(&outs, 2),
        vec![ack(2, 2)],
        "nothing new to wait for"
    );
    assert_eq!(
        f.last_log_id(),
        id(3, 2),
        "a matching prefix never truncates"
    );

    // Overlapping entries plus one new: only the new one is written, with no truncation.
    let outs = f.step(recv(
        2,
        append(2, id(1, 1), vec![ent(2, 1), ent(3, 2), ent(4, 2)], 0),
    ));
    let w = the_write(&outs).expect("entry 4 is written");
    assert_eq!((w.truncate_from, w.entries), (None, vec![ent(4, 2)]));
}

#[test]
fn commit_index_is_min_of_leader_commit_and_last_new_entry() {
    // Entries 3 and 4 came from a deposed leader of term 2; the leader of term 3 has other
    // entries there and has committed up to 4 in its own log.
    let mut f = node(1, &[1, 2, 3], 3, &[1, 1, 2, 2], 0);
    let outs = f.step(recv(2, append(3, id(2, 1), vec![], 4)));
    assert_eq!(
        f.commit_index(),
        2,
        "only what this append vouches for (up to prev) may be committed"
    );
    assert_eq!(
        applied(&outs),
        vec![1, 2],
        "the stale entries 3 and 4 are not applied"
    );

    // The leader then sends its own entries 3 and 4 (term 3): they replace ours and commit.
    let outs = f.step(recv(2, append(3, id(2, 1), vec![ent(3, 3), ent(4, 3)], 4)));
    let w = the_write(&outs).expect("write");
    assert_eq!(w.truncate_from, Some(3));
    assert_eq!(f.commit_index(), 4);
    assert!(
        applied(&outs).is_empty(),
        "entries are applied once durable"
    );
    let outs = f.step(Input::Persisted { seq: w.seq });
    assert_eq!(applied(&outs), vec![3, 4]);

    // A lower leader commit never moves the commit index back.
    f.step(recv(2, append(3, id(4, 3), vec![], 1)));
    assert_eq!(f.commit_index(), 4);
}

// ----- Figure 2, rules for leaders -----

#[test]
fn new_leader_probes_backs_up_by_term_and_retries() {
    let mut l = node(1, &[1, 2, 3], 3, &[1, 1, 2, 2, 3], 0);
    let (outs, noop) = campaign(&mut l, &[3]);
    assert_eq!(l.term(), 4);
    // The log holds no configuration yet (only `Config` does): the new leader's first entry
    // records it, in place of a no-op.
    assert_eq!(
        noop.entries,
        vec![Entry {
            term: 4,
            index: 6,
            kind: EntryKind::Config,
            data: raft_proto_core::codec::encode_membership(&Membership::with_voters([1, 2, 3])),
        }]
    );
    for peer in [2, 3] {
        let a = appends_to(&outs, peer);
        assert_eq!(a.len(), 1, "one probe per follower");
        assert_eq!((a[0].term, a[0].prev, a[0].commit), (4, id(5, 3), 0));
        assert_eq!(a[0].entries, noop.entries);
    }
    l.step(Input::Persisted { seq: noop.seq });

    // Follower 2 holds 1 1 2: it has nothing at 5; its hint is its last entry (3, term 2).
    let outs = l.step(recv(2, reject(4, 5, id(3, 2))));
    let a = appends_to(&outs, 2);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].prev, id(3, 2), "retry right after the hinted entry");
    assert_eq!(
        a[0].entries.iter().map(|e| e.index).collect::<Vec<_>>(),
        [4, 5, 6]
    );

    // Follower 3 holds 1 1 1 1 1: its hint is (5, term 1). The leader's last entry of term <= 1
    // is 2, so it skips 5, 4 and 3 in one step instead of one index per round trip.
    let outs = l.step(recv(3, reject(4, 5, id(5, 1))));
    let a = appends_to(&outs, 3);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].prev, id(2, 1));
    assert_eq!(a[0].entries.first().map(|e| e.index), Some(3));

    assert_eq!(l.commit_index(), 0);
    let outs = l.step(recv(2, ack(4, 6)));
    assert_eq!(
        l.commit_index(),
        6,
        "leader (durable) + follower 2 = majority"
    );
    assert!(
        appends_to(&outs, 2).iter().any(|a| a.commit == 6),
        "the new commit index is sent out"
    );

    // A rejection that arrives after the follower matched is stale and ignored.
    let outs = l.step(recv(2, reject(4, 5, id(3, 2))));
    assert_eq!(sends(&outs), 0);
    assert_eq!(l.status().peers[0].matched, 6);
}

#[test]
fn idle_leader_heartbeats_and_proposals_go_into_its_log() {
    let mut l = node(1, &[1, 2, 3], 3, &[1, 1], 0);
    let (_, noop) = campaign(&mut l, &[2]);
    l.step(Input::Persisted { seq: noop.seq });
    l.step(recv(2, ack(4, 3)));
    assert_eq!(l.commit_index(), 3);

    // Two idle ticks (the heartbeat interval): one heartbeat per follower, each carrying the
    // commit index capped at what that follower is known to hold.
    let mut outs = l.step(Input::Tick);
    assert_eq!(sends(&outs), 0);
    outs.extend(l.step(Input::Tick));
    assert_eq!(
        sent_to(&outs, 2),
        vec![Message::Heartbeat(Heartbeat { term: 4, commit: 3 })]
    );
    assert_eq!(
        sent_to(&outs, 3),
        vec![Message::Heartbeat(Heartbeat { term: 4, commit: 0 })]
    );

    let outs = l.step(Input::Propose(Proposal {
        request: 9,
        data: Bytes::from_static(b"set x"),
    }));
    assert!(outs.contains(&Output::Proposed {
        request: 9,
        result: Ok(id(4, 4)),
    }));
    let w = the_write(&outs).expect("the leader appends the command to its own log");
    assert_eq!(w.entries.len(), 1);
    assert_eq!(
        (w.entries[0].index, &w.entries[0].data[..]),
        (4, &b"set x"[..])
    );
    assert_eq!(l.last_log_id(), id(4, 4));
    let a = appends_to(&outs, 2);
    assert_eq!(
        a.len(),
        1,
        "follower 2 is in sync: the entry is streamed at once"
    );
    assert_eq!(
        (a[0].prev, a[0].entries.clone()),
        (id(3, 4), w.entries.clone())
    );

    l.step(Input::Persisted { seq: w.seq });
    let outs = l.step(recv(2, ack(4, 4)));
    assert_eq!(l.commit_index(), 4);
    assert_eq!(applied(&outs), vec![4]);
}

#[test]
fn leader_commits_only_current_term_entries_held_by_a_durable_majority() {
    // Five voters; the leader recovers 1 (term 1, committed), 2 (term 2) and wins term 3.
    let mut l = node(1, &[1, 2, 3, 4, 5], 2, &[1, 2], 1);
    let (_, noop) = campaign(&mut l, &[2, 3]);
    assert_eq!((l.term(), l.last_log_id()), (3, id(3, 3)));

    // Entry 2 reaches followers 2 and 3: with the leader that is 3 of 5, but it is of term 2.
    l.step(recv(2, ack(3, 2)));
    l.step(recv(3, ack(3, 2)));
    assert_eq!(
        l.commit_index(),
        1,
        "Figure 8: replicas of an old-term entry are not counted"
    );

    // The no-op of term 3 reaches 2 and 3, but the leader's own copy is not durable yet.
    l.step(recv(2, ack(3, 3)));
    l.step(recv(3, ack(3, 3)));
    assert_eq!(
        l.commit_index(),
        1,
        "the leader counts itself only once its write is durable"
    );

    let outs = l.step(Input::Persisted { seq: noop.seq });
    assert_eq!(
        l.commit_index(),
        3,
        "the no-op commits, and entry 2 with it"
    );
    assert_eq!(applied(&outs), vec![2, 3]);
    for peer in [2, 3] {
        assert!(appends_to(&outs, peer).iter().any(|a| a.commit == 3));
    }
}

// ----- Figure 7 -----

/// Figure 7: a leader for term 8 with log terms 1 1 1 4 4 5 5 6 6 6 and followers (a)-(f).
#[test]
fn figure7_leader_brings_every_follower_in_line_backing_up_by_term() {
    let leader: &[Term] = &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    let followers: [(&str, &[Term]); 6] = [
        ("a", &[1, 1, 1, 4, 4, 5, 5, 6, 6]),
        ("b", &[1, 1, 1, 4]),
        ("c", &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6]),
        ("d", &[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7]),
        ("e", &[1, 1, 1, 4, 4, 4, 4]),
        ("f", &[1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3]),
    ];
    // Seven voters: node 1 is the leader, nodes 2..=7 are followers (a)..(f). Each recovers
    // its log with the latest term it has seen (the leader: 7, so it campaigns in term 8).
    let mut c = Cluster::new(7, 42);
    let install = |c: &mut Cluster, n: NodeId, terms: &[Term], term: Term| {
        let d = c.disks.get_mut(&n).expect("disk");
        d.entries = entries(terms);
        d.hard_state = HardState {
            term,
            vote: NO_NODE,
            commit: 0,
        };
        c.restart(n);
    };
    install(&mut c, 1, leader, 7);
    for (k, (_, terms)) in followers.iter().enumerate() {
        install(
            &mut c,
            k as NodeId + 2,
            terms,
            *terms.last().expect("non-empty"),
        );
    }

    // (a), (b), (e) and (f) vote for the leader; (c) and (d) have more up-to-date logs.
    c.fire_election(1);
    let mut rounds = [0u32; 8];
    let mut rejections = [0u32; 8];
    let mut synced = [false; 8];
    let mut deliveries = 0;
    while let Some((from, to, msg)) = c.net.pop_front() {
        deliveries += 1;
        assert!(deliveries < 10_000, "network did not quiesce");
        match &msg {
            Message::AppendEntries(_) if !synced[to as usize] => rounds[to as usize] += 1,
            Message::AppendEntriesResponse(r)
                if matches!(r.result, AppendResult::Reject { .. }) =>
            {
                rejections[from as usize] += 1
            }
            _ => {}
        }
        c.step(to, Input::Receive { from, msg });
        if to != 1 && c.node(1).role() == Role::Leader {
            let l = c.node(1);
            let f = c.node(to);
            synced[to as usize] = f.last_log_id() == l.last_log_id()
                && (1..=l.last_log_id().index).all(|i| f.entry(i) == l.entry(i));
        }
    }
    let l = c.node(1);
    assert_eq!((l.role(), l.term()), (Role::Leader, 8));
    assert_eq!(
        l.last_log_id(),
        id(11, 8),
        "the leader's no-op of term 8 at index 11"
    );

    // The first probe carries prev = (10, term 6). It matches in (c) and (d): no rejection, and
    // the no-op replaces their conflicting tail. Everyone else rejects exactly once, however
    // far back the logs diverge: (f) differs from index 4 on, but its hint (10, term 3) sends
    // the leader straight to its last entry of term <= 3, index 3; (e)'s hint (7, term 4) sends
    // it to index 5. Backing up one index per round trip would cost (f) 7 rejections.
    let expected_rejections = [1, 1, 0, 0, 1, 1];
    let expected_truncation = [None, None, Some(11), Some(11), Some(6), Some(4)];
    for (k, (name, _)) in followers.iter().enumerate() {
        let n = k as NodeId + 2;
        assert!(synced[n as usize], "({name}) matches the leader");
        assert_eq!(
            rejections[n as usize], expected_rejections[k],
            "({name}) rejections"
        );
        assert_eq!(
            rounds[n as usize],
            expected_rejections[k] + 1,
            "({name}) AppendEntries rounds until its log matched"
        );
        let truncated = c.trace.iter().find_map(|(who, o)| match o {
            Output::Persist(w) if *who == n && w.truncate_from.is_some() => w.truncate_from,
            _ => None,
        });
        assert_eq!(
            truncated, expected_truncation[k],
            "({name}) truncation point"
        );
    }

    // A heartbeat round tells everyone the commit index: entry 11 is on all seven nodes.
    c.tick(1);
    c.tick(1);
    c.deliver_all();
    let l = c.node(1);
    for (i, e) in entries(leader).iter().enumerate() {
        assert_eq!(
            l.entry(i as Index + 1),
            Some(e),
            "the leader never changes its own log"
        );
    }
    for n in 1..=7 {
        let f = c.node(n);
        assert_eq!(f.commit_index(), 11, "node {n}");
        assert_eq!(f.last_log_id(), id(11, 8), "node {n}");
        for i in 1..=11 {
            assert_eq!(f.entry(i), l.entry(i), "node {n} index {i}");
        }
    }
}

// ----- Figure 8 -----

/// Cuts every link except those inside each group; nodes in no group are isolated.
fn partition(c: &mut Cluster, groups: &[&[NodeId]]) {
    c.cut.clear();
    let group_of = |n: NodeId| groups.iter().position(|g| g.contains(&n));
    for &a in &c.ids {
        for &b in &c.ids {
            if a != b && (group_of(a).is_none() || group_of(a) != group_of(b)) {
                c.cut.insert((a, b));
            }
        }
    }
}

/// Delivers one message at a time until `done` holds (true) or the network is empty (false).
fn deliver_until(c: &mut Cluster, done: impl Fn(&Cluster) -> bool) -> bool {
    for _ in 0..10_000 {
        if done(c) {
            return true;
        }
        let Some((from, to, msg)) = c.net.pop_front() else {
            return false;
        };
        if !c.cut.contains(&(from, to)) {
            c.step(to, Input::Receive { from, msg });
        }
    }
    panic!("network did not quiesce");
}

fn matched(c: &Cluster, leader: NodeId, peer: NodeId) -> Index {
    let st = c.node(leader).status();
    st.peers
        .iter()
        .find(|p| p.id == peer)
        .map_or(0, |p| p.matched)
}

fn data_at(c: &Cluster, n: NodeId, i: Index) -> Option<(Term, Bytes)> {
    c.node(n).entry(i).map(|e| (e.term, e.data.clone()))
}

/// Figure 8 (a)-(c), with the core's term numbers: the uncommitted entry "a" (index 2, term 1)
/// of S1 ends up on S1, S2 and S3, a majority, while S5 holds a different entry of term 2 at
/// index 2. Returns the cluster with S1 leader of term 3, S2 holding S1's no-op (index 3) and
/// S3 holding only up to index 2.
fn figure8_stage_c() -> Cluster {
    // This figure is about logs and terms only: voters that still hold a leader's lease are
    // restarted before each election (a restart forgets the leader). One entry per
    // AppendEntries, so that index 2 can reach S3 before index 3 does.
    let mut c = Cluster::with_config(5, 8, |cfg| {
        cfg.check_quorum = false;
        cfg.max_message_bytes = 1;
    });

    // (a) S1 leads term 1; its no-op commits everywhere; "a" reaches S2 only.
    assert!(c.elect(1));
    assert_eq!(c.node(1).term(), 1);
    partition(&mut c, &[&[1, 2], &[3, 4, 5]]);
    c.propose(1, 1, b"a");
    c.deliver_all();
    assert_eq!(data_at(&c, 2, 2), Some((1, Bytes::from_static(b"a"))));
    assert_eq!(c.node(1).commit_index(), 1, "two of five hold \"a\"");

    // (b) S1 crashes. S5 wins term 2 with the votes of S3 and S4, writes its no-op at index 2,
    // and crashes before sending it anywhere.
    partition(&mut c, &[&[3, 4, 5]]);
    c.restart(3);
    c.restart(4);
    c.fire_election(5);
    assert!(deliver_until(&mut c, |c| c.node(5).role() == Role::Leader));
    assert_eq!(c.node(5).term(), 2);
    partition(&mut c, &[&[3, 4]]);
    c.deliver_all();
    assert_eq!(c.node(5).last_log_id(), id(2, 2));
    assert_eq!(c.node(3).last_log_id(), id(1, 1));

    // (c) S1 restarts and, with S2 and S3, is elected leader of term 3 (S3 first tells it
    // about term 2, so the second attempt is the one that wins).
    c.restart(1);
    c.restart(2);
    c.restart(3);
    partition(&mut c, &[&[1, 2, 3]]);
    let mut attempts = 0;
    while c.node(1).role() != Role::Leader {
        attempts += 1;
        assert!(attempts <= 3, "S1 should win with S2 and S3");
        c.fire_election(1);
        deliver_until(&mut c, |c| c.node(1).role() == Role::Leader);
    }
    assert_eq!(c.node(1).term(), 3);
    assert_eq!(c.node(1).last_log_id(), id(3, 3), "its no-op of term 3");

    // S1 replicates: S2 takes the no-op at once; S3 first needs "a".
    assert!(deliver_until(&mut c, |c| matched(c, 1, 3) >= 2));
    assert_eq!(matched(&c, 1, 2), 3);
    assert_eq!(matched(&c, 1, 3), 2);
    for n in [1, 2, 3] {
        assert_eq!(
            data_at(&c, n, 2),
            Some((1, Bytes::from_static(b"a"))),
            "S{n}"
        );
    }
    c
}

#[test]
fn figure8_entry_of_an_earlier_term_on_a_majority_is_not_committed() {
    let mut c = figure8_stage_c();
    assert_eq!(
        c.node(1).commit_index(),
        1,
        "\"a\" (term 1) is on S1, S2 and S3 but must not be committed by the term-3 leader"
    );

    // (e) Once the term-3 no-op is on a majority too, it commits, and "a" with it.
    c.deliver_all();
    assert_eq!(matched(&c, 1, 3), 3);
    assert_eq!(c.node(1).commit_index(), 3);
    c.tick(1);
    c.tick(1);
    c.deliver_all();
    assert_eq!(c.node(2).commit_index(), 3);
    assert_eq!(c.node(3).commit_index(), 3);

    // Now "a" is safe: with S1 gone, S5 cannot win (S2 and S3 refuse it) and whoever leads
    // keeps "a" at index 2, overwriting S5's entry.
    partition(&mut c, &[&[2, 3, 4, 5]]);
    let mut leader = None;
    for _ in 0..300 {
        for n in 2..=5 {
            c.tick(n);
        }
        c.deliver_all();
        for n in [4, 5] {
            let lost = c.node(n).role() == Role::Leader && c.node(n).term() > 2;
            assert!(
                !lost,
                "S{n} lacks committed entries but won term {}",
                c.node(n).term()
            );
        }
        leader = [2, 3]
            .into_iter()
            .find(|&n| c.node(n).role() == Role::Leader);
        if leader.is_some() && c.node(5).entry(2) == c.node(1).entry(2) {
            break;
        }
    }
    assert!(leader.is_some(), "S2 or S3 takes over");
    for n in 2..=5 {
        assert_eq!(
            data_at(&c, n, 2),
            Some((1, Bytes::from_static(b"a"))),
            "S{n}"
        );
    }
}

#[test]
fn figure8_why_it_must_not_be_committed_a_later_leader_may_overwrite_it() {
    let mut c = figure8_stage_c();
    assert_eq!(c.node(1).commit_index(), 1);

    // (d) S1 crashes before the no-op of term 3 reaches S3. S5 comes back; its last entry
    // (2, term 2) beats S3's (2, term 1) and S4's (1, term 1), so it wins with their votes.
    partition(&mut c, &[&[2, 3, 4, 5]]);
    for n in [3, 4, 5] {
        c.restart(n);
    }
    for _ in 0..300 {
        if c.node(5).role() == Role::Leader && c.node(5).term() > 2 {
            break;
        }
        c.tick(5);
        c.deliver_all();
    }
    assert_eq!(c.node(5).role(), Role::Leader);
    assert!(c.node(5).term() >= 4);
    c.tick(5);
    c.tick(5);
    c.deliver_all();

    // "a" was on a majority, yet it is gone from S2 and S3: only the crashed S1 still has it.
    for n in [2, 3, 4] {
        assert_eq!(c.node(n).entry(2), c.node(5).entry(2), "S{n}");
        assert_eq!(
            data_at(&c, n, 2).map(|d| d.0),
            Some(2),
            "S{n} holds S5's entry"
        );
    }
    assert_eq!(data_at(&c, 1, 2), Some((1, Bytes::from_static(b"a"))));
}
