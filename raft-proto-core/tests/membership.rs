//! Membership changes (thesis chapter 4): learners, promotion, the direct path for one voter,
//! joint consensus for more, one change at a time, configurations that take effect on append
//! and go away with their entries, removed leaders and removed nodes, recovery, joining nodes.
mod common;

use bytes::Bytes;
use common::Cluster;
use raft_proto_core::{
    codec::encode_membership, ChangeError, ChangeStep, Entry, EntryKind, Event, Index, Input,
    LogId, Membership, Message, NodeId, Output, ProposeError, Role,
};

fn cluster(n: u64, seed: u64) -> Cluster {
    let mut cl = Cluster::with_config(n, seed, |c| c.learner_catch_up_entries = 5);
    cl.report_applied = true;
    assert!(cl.elect(1), "node 1 leads");
    settle(&mut cl);
    cl
}

/// A heartbeat round or two: everyone learns the commit index.
fn settle(cl: &mut Cluster) {
    for _ in 0..3 {
        for _ in 0..2 {
            let leaders = cl.leaders();
            for id in leaders {
                cl.tick(id);
            }
        }
        cl.deliver_all();
    }
}

fn change(
    cl: &mut Cluster,
    leader: NodeId,
    request: u64,
    steps: Vec<ChangeStep>,
) -> Result<LogId, ProposeError> {
    cl.step(leader, Input::ChangeMembership { request, steps });
    let answer = cl.trace.iter().rev().find_map(|(n, o)| match o {
        Output::Proposed { request: r, result } if *n == leader && *r == request => Some(*result),
        _ => None,
    });
    answer.expect("the change is answered")
}

fn add_learner(id: NodeId) -> ChangeStep {
    ChangeStep::AddLearner {
        id,
        data: Bytes::from(format!("10.0.0.{id}:7000")),
    }
}

fn membership(cl: &Cluster, id: NodeId) -> Membership {
    (**cl.node(id).membership().1).clone()
}

fn write(cl: &mut Cluster, leader: NodeId, request: u64) {
    cl.propose(leader, request, b"w");
    cl.deliver_all();
}

/// Adds node `id` as a learner through `leader` and lets it catch up.
fn grow_learner(cl: &mut Cluster, leader: NodeId, id: NodeId, request: u64) {
    cl.add_node(id);
    change(cl, leader, request, vec![add_learner(id)]).expect("learner added");
    cl.deliver_all();
    settle(cl);
}

#[test]
fn a_learner_receives_the_log_but_never_votes_or_counts() {
    let mut cl = cluster(3, 1);
    grow_learner(&mut cl, 1, 4, 100);
    let m = membership(&cl, 1);
    assert_eq!(m.voters(), &[1, 2, 3]);
    assert_eq!(m.learners(), &[4]);
    assert_eq!(m.data(4).map(|d| &d[..]), Some(&b"10.0.0.4:7000"[..]));
    assert_eq!(
        membership(&cl, 4),
        m,
        "the learner learned the configuration from the log"
    );
    assert_eq!(cl.node(4).commit_index(), cl.node(1).commit_index());

    // With both other voters cut off, the learner's acknowledgements commit nothing.
    cl.cut.extend([(1, 2), (2, 1), (1, 3), (3, 1)]);
    let before = cl.node(1).commit_index();
    write(&mut cl, 1, 1);
    assert_eq!(
        cl.node(4).last_log_id(),
        cl.node(1).last_log_id(),
        "replicated to the learner"
    );
    assert_eq!(
        cl.node(1).commit_index(),
        before,
        "a learner does not count"
    );
    cl.heal();

    // A learner never campaigns, however long it goes without a leader.
    cl.isolate(4);
    for _ in 0..200 {
        cl.tick(4);
    }
    assert_eq!(cl.node(4).role(), Role::Follower);
    assert!(
        cl.count_outputs(4, |o| matches!(
            o,
            Output::Send {
                msg: Message::RequestVote(_),
                ..
            }
        )) == 0
    );
}

#[test]
fn promotion_waits_for_the_learner_to_catch_up_then_takes_the_direct_path() {
    let mut cl = cluster(3, 2);
    cl.add_node(4);
    cl.isolate(4);
    change(&mut cl, 1, 100, vec![add_learner(4)]).expect("learner added");
    cl.deliver_all();
    for r in 0..10 {
        write(&mut cl, 1, r);
    }
    let refused = change(&mut cl, 1, 101, vec![ChangeStep::Promote { id: 4 }]);
    assert!(
        matches!(
            refused,
            Err(ProposeError::Membership(ChangeError::LearnerBehind {
                id: 4,
                max: 5,
                ..
            }))
        ),
        "{refused:?}"
    );
    assert!(refused.unwrap_err().is_retryable());
    assert_eq!(membership(&cl, 1).learners(), &[4], "unchanged");

    cl.heal();
    settle(&mut cl);
    let at = change(&mut cl, 1, 102, vec![ChangeStep::Promote { id: 4 }]).expect("promoted");
    let m = membership(&cl, 1);
    assert_eq!(m.voters(), &[1, 2, 3, 4]);
    assert!(!m.is_joint(), "one voter added: the direct path");
    assert_eq!(cl.node(1).membership().0, at.index);
    cl.deliver_all();
    settle(&mut cl);
    assert!(cl.node(1).commit_index() >= at.index);
    // Four voters: three make a quorum now.
    cl.cut.extend([(1, 2), (2, 1)]);
    write(&mut cl, 1, 50);
    let last = cl.node(1).last_log_id().index;
    assert_eq!(
        cl.node(1).commit_index(),
        last,
        "1, 3 and 4 are a quorum of four"
    );
}

#[test]
fn a_change_of_several_voters_goes_through_a_joint_configuration_and_leaves_it() {
    let mut cl = cluster(3, 3);
    grow_learner(&mut cl, 1, 4, 100);
    grow_learner(&mut cl, 1, 5, 101);
    let joint_at = change(
        &mut cl,
        1,
        102,
        vec![ChangeStep::Promote { id: 4 }, ChangeStep::Promote { id: 5 }],
    )
    .expect("joint change");
    let joint = membership(&cl, 1);
    assert!(joint.is_joint());
    assert_eq!(
        (joint.voters(), joint.outgoing()),
        (&[1, 2, 3, 4, 5][..], &[1, 2, 3][..])
    );
    // A second change while the first is not finished is refused, the cluster unchanged.
    assert_eq!(
        change(&mut cl, 1, 103, vec![ChangeStep::Remove { id: 2 }]),
        Err(ProposeError::Membership(ChangeError::InProgress))
    );
    cl.deliver_all();
    settle(&mut cl);
    let left = membership(&cl, 1);
    assert!(
        !left.is_joint(),
        "left automatically once the joint entry committed"
    );
    assert_eq!(left.voters(), &[1, 2, 3, 4, 5]);
    let (left_at, _) = cl.node(1).membership();
    assert!(left_at > joint_at.index);
    assert!(cl.node(1).commit_index() >= left_at);
    for id in 2..=5 {
        assert_eq!(membership(&cl, id), left, "node {id}");
    }
    // The state machines saw the configuration entries in order, as entries to skip.
    let kinds: Vec<EntryKind> = cl.applied[&5].iter().map(|e| e.kind).collect();
    assert!(
        kinds.iter().filter(|k| **k == EntryKind::Config).count() >= 4,
        "{kinds:?}"
    );
}

#[test]
fn a_joint_configuration_commits_only_with_both_majorities() {
    let mut cl = cluster(3, 4);
    grow_learner(&mut cl, 1, 4, 100);
    grow_learner(&mut cl, 1, 5, 101);
    // The old voters 2 and 3 are cut off: only the new majority {1, 4, 5} can acknowledge.
    cl.cut.extend([(1, 2), (2, 1), (1, 3), (3, 1)]);
    let at = change(
        &mut cl,
        1,
        102,
        vec![
            ChangeStep::Promote { id: 4 },
            ChangeStep::Promote { id: 5 },
            ChangeStep::Remove { id: 2 },
            ChangeStep::Remove { id: 3 },
        ],
    )
    .expect("joint change");
    cl.deliver_all();
    assert_eq!(
        cl.node(4).last_log_id().index,
        at.index,
        "replicated to the new voters"
    );
    assert!(
        cl.node(1).commit_index() < at.index,
        "the new voters alone cannot commit the joint entry"
    );
    assert!(membership(&cl, 1).is_joint());
    cl.heal();
    cl.deliver_all();
    settle(&mut cl);
    let m = membership(&cl, 1);
    assert_eq!((m.voters(), m.is_joint()), (&[1, 4, 5][..], false));
}

#[test]
fn configurations_take_effect_on_append_and_go_away_with_their_entries() {
    let mut cl = cluster(3, 5);
    grow_learner(&mut cl, 1, 4, 100);
    // Node 1 appends a promotion of 4 that reaches only node 4, then loses leadership.
    cl.cut.extend([(1, 2), (2, 1), (1, 3), (3, 1)]);
    let at = change(&mut cl, 1, 101, vec![ChangeStep::Promote { id: 4 }]).expect("appended");
    cl.deliver_all();
    assert!(
        membership(&cl, 4).is_voter(4),
        "in force on node 4 once appended"
    );
    assert!(
        cl.node(1).commit_index() < at.index,
        "1 and 4 are not a quorum of four"
    );
    // Node 2 leads a new term with node 3; its entries replace node 4's promotion.
    cl.heal();
    cl.isolate(1);
    let mut elected = false;
    for _ in 0..100 {
        cl.tick(2);
        cl.tick(3);
        cl.tick(4);
        cl.deliver_all();
        if cl.node(2).role() == Role::Leader || cl.node(3).role() == Role::Leader {
            elected = true;
            break;
        }
    }
    assert!(elected, "2 or 3 leads");
    let leader = if cl.node(2).role() == Role::Leader {
        2
    } else {
        3
    };
    write(&mut cl, leader, 7);
    settle(&mut cl);
    let m4 = membership(&cl, 4);
    assert!(
        !m4.is_voter(4),
        "the cut entry's configuration went with it: {m4}"
    );
    assert!(m4.is_learner(4));
    let reverted = cl.trace.iter().any(|(n, o)| {
        *n == 4
            && matches!(o, Output::MembershipChanged { membership, .. } if !membership.is_voter(4))
    });
    assert!(
        reverted,
        "node 4 told its driver about the configuration in force again"
    );
    assert_eq!(cl.node(4).commit_index(), cl.node(leader).commit_index());
}

#[test]
fn a_removed_leader_steps_down_once_committed_and_hands_over() {
    let mut cl = cluster(3, 6);
    let at = change(&mut cl, 1, 100, vec![ChangeStep::Remove { id: 1 }]).expect("removal");
    assert_eq!(
        cl.node(1).role(),
        Role::Leader,
        "it leads until its removal commits"
    );
    assert!(!membership(&cl, 1).is_voter(1));
    cl.deliver_all();
    assert!(
        cl.node(1).commit_index() >= at.index,
        "the removal committed"
    );
    assert_ne!(cl.node(1).role(), Role::Leader, "stepped down");
    let handed = cl.trace.iter().find_map(|(n, o)| match o {
        Output::Event(Event::RemovedFromConfiguration { successor, .. }) if *n == 1 => {
            Some(*successor)
        }
        _ => None,
    });
    let successor = handed.expect("removal event").expect("a voter in sync");
    // The successor campaigned at once: a new leader without any election timeout passing.
    cl.deliver_all();
    assert_eq!(cl.leaders(), vec![successor]);
    // The removed node never campaigns again.
    for _ in 0..100 {
        cl.tick(1);
    }
    cl.deliver_all();
    assert_eq!(cl.leaders(), vec![successor]);
    assert_ne!(cl.node(1).role(), Role::Candidate);
    write(&mut cl, successor, 9);
    let last = cl.node(successor).last_log_id().index;
    assert_eq!(cl.node(successor).commit_index(), last, "two voters commit");
}

#[test]
fn a_removed_leader_under_load_brings_a_voter_up_to_date_before_handing_over() {
    let mut cl = cluster(3, 6);
    let at = change(&mut cl, 1, 100, vec![ChangeStep::Remove { id: 1 }]).expect("removal");
    // Another write right behind the removal: when the removal commits, no voter holds the
    // whole log yet.
    cl.propose(1, 101, b"in flight");
    let last = cl.node(1).last_log_id().index;
    assert!(last > at.index);
    let mut steps = 0;
    while cl.node(1).commit_index() < at.index {
        let (from, to, msg) = cl
            .net
            .pop_front()
            .expect("messages until the removal commits");
        cl.step(to, Input::Receive { from, msg });
        steps += 1;
        assert!(steps < 1_000);
    }
    assert_eq!(
        cl.node(1).role(),
        Role::Leader,
        "it first brings a voter up to date"
    );
    // Meanwhile proposals are refused, naming the voter taking over.
    cl.propose(1, 102, b"refused");
    let refused = cl.trace.iter().rev().find_map(|(n, o)| match o {
        Output::Proposed {
            request: 102,
            result,
        } if *n == 1 => Some(*result),
        _ => None,
    });
    let Some(Err(ProposeError::TransferInProgress { to })) = refused else {
        panic!("proposal during the handover: {refused:?}");
    };
    cl.deliver_all();
    assert_ne!(cl.node(1).role(), Role::Leader, "stepped down");
    let handed = cl.trace.iter().find_map(|(n, o)| match o {
        Output::Event(Event::RemovedFromConfiguration { successor, .. }) if *n == 1 => {
            Some(*successor)
        }
        _ => None,
    });
    assert_eq!(
        handed,
        Some(Some(to)),
        "handed over to the voter it caught up"
    );
    // The successor campaigned at once and holds the entry written behind the removal.
    cl.deliver_all();
    assert_eq!(cl.leaders(), vec![to]);
    assert!(cl.node(to).log_term(last).is_some());
}

#[test]
fn a_removed_node_that_missed_its_removal_cannot_disrupt() {
    for pre_vote in [true, false] {
        let mut cl = Cluster::with_config(3, 7, |c| c.pre_vote = pre_vote);
        cl.report_applied = true;
        assert!(cl.elect(1));
        settle(&mut cl);
        cl.isolate(3);
        change(&mut cl, 1, 100, vec![ChangeStep::Remove { id: 3 }]).expect("removal");
        cl.deliver_all();
        settle(&mut cl);
        assert_eq!(membership(&cl, 1).voters(), &[1, 2]);
        assert_eq!(
            membership(&cl, 3).voters(),
            &[1, 2, 3],
            "node 3 never heard"
        );
        let term = cl.node(1).term();
        // Node 3 times out again and again; then the partition heals.
        for _ in 0..100 {
            cl.tick(3);
        }
        cl.heal();
        for _ in 0..50 {
            cl.tick(3);
            cl.tick(1);
            cl.tick(2);
            cl.deliver_all();
        }
        assert_eq!(cl.node(1).role(), Role::Leader, "pre_vote {pre_vote}");
        assert_eq!(
            cl.node(1).term(),
            term,
            "pre_vote {pre_vote}: no term was raised"
        );
        assert_eq!(cl.node(2).term(), term);
        let campaigned = cl.count_outputs(3, |o| {
            matches!(
                o,
                Output::Send {
                    msg: Message::RequestVote(_),
                    ..
                }
            )
        });
        assert!(campaigned > 0, "node 3 tried to get elected");
    }
}

#[test]
fn a_candidate_does_not_count_a_learners_vote() {
    let mut cl = cluster(3, 8);
    grow_learner(&mut cl, 1, 4, 100);
    // Node 2 campaigns with node 1 gone and node 3 cut off: only the learner can answer.
    cl.remove_node(1);
    cl.cut.extend([(2, 3), (3, 2)]);
    for _ in 0..60 {
        cl.tick(2);
        cl.deliver_all();
    }
    assert_ne!(
        cl.node(2).role(),
        Role::Leader,
        "the learner's grant is not a vote"
    );
}

#[test]
fn bad_changes_are_refused_and_change_nothing() {
    let mut cl = cluster(3, 9);
    let before = membership(&cl, 1);
    let cases: Vec<(Vec<ChangeStep>, ProposeError)> = vec![
        (vec![add_learner(2)], ChangeError::AlreadyMember(2).into()),
        (
            vec![ChangeStep::Promote { id: 9 }],
            ChangeError::UnknownNode(9).into(),
        ),
        (
            vec![ChangeStep::Promote { id: 2 }],
            ChangeError::AlreadyVoter(2).into(),
        ),
        (
            vec![ChangeStep::Remove { id: 9 }],
            ChangeError::UnknownNode(9).into(),
        ),
        (
            vec![
                ChangeStep::Remove { id: 1 },
                ChangeStep::Remove { id: 2 },
                ChangeStep::Remove { id: 3 },
            ],
            ChangeError::NoVoters.into(),
        ),
        (vec![], ChangeError::Empty.into()),
    ];
    for (k, (steps, err)) in cases.into_iter().enumerate() {
        assert_eq!(change(&mut cl, 1, k as u64, steps), Err(err));
        assert_eq!(membership(&cl, 1), before);
    }
    assert_eq!(
        change(&mut cl, 2, 50, vec![add_learner(4)]),
        Err(ProposeError::NotLeader {
            leader_hint: Some(1)
        })
    );
    // A fresh leader must commit an entry of its term first.
    cl.isolate(2);
    cl.isolate(3);
    cl.remove_node(1);
    cl.heal();
    let mut leader = None;
    for _ in 0..60 {
        cl.tick(2);
        cl.tick(3);
        // Deliver everything but the appends' acknowledgements.
        while let Some((from, to, msg)) = cl.net.pop_front() {
            if matches!(msg, Message::AppendEntriesResponse(_)) || !cl.nodes.contains_key(&to) {
                continue;
            }
            cl.step(to, Input::Receive { from, msg });
        }
        leader = cl.leaders().first().copied();
        if leader.is_some() {
            break;
        }
    }
    let leader = leader.expect("a new leader");
    assert_eq!(
        change(&mut cl, leader, 60, vec![add_learner(4)]),
        Err(ProposeError::Membership(ChangeError::LeaderNotReady))
    );
}

#[test]
fn membership_is_recovered_from_the_log_and_from_snapshots() {
    let mut cl = Cluster::with_config(3, 10, |c| {
        c.learner_catch_up_entries = 5;
        c.snapshot_after_entries = Some(8);
        c.compaction_keep_entries = 0;
    });
    cl.report_applied = true;
    assert!(cl.elect(1));
    settle(&mut cl);
    grow_learner(&mut cl, 1, 4, 100);
    change(&mut cl, 1, 101, vec![ChangeStep::Promote { id: 4 }]).expect("promoted");
    cl.deliver_all();
    settle(&mut cl);
    let m = membership(&cl, 1);
    // From the log: restart before any snapshot covers the changes.
    cl.restart(2);
    assert_eq!(membership(&cl, 2), m);
    // Past a snapshot: the log is compacted beyond the configuration entries.
    for r in 0..30 {
        write(&mut cl, 1, 200 + r);
    }
    settle(&mut cl);
    let disk = &cl.disks[&3];
    let (meta, _) = disk.snapshot.as_ref().expect("node 3 took a snapshot");
    assert_eq!(
        *meta.membership, m,
        "the snapshot carries the configuration"
    );
    assert!(
        disk.entries.iter().all(|e| e.kind != EntryKind::Config),
        "no configuration entry left in node 3's log"
    );
    cl.restart(3);
    assert_eq!(membership(&cl, 3), m);
    assert!(cl.node(3).membership().0 >= 1);
}

#[test]
fn a_joining_node_learns_the_cluster_from_a_snapshot() {
    let mut cl = Cluster::with_config(3, 11, |c| {
        c.snapshot_after_entries = Some(5);
        c.compaction_keep_entries = 0;
    });
    cl.report_applied = true;
    assert!(cl.elect(1));
    for r in 0..20 {
        write(&mut cl, 1, r);
    }
    settle(&mut cl);
    assert!(
        cl.node(1).log_floor().index > 1,
        "the leader compacted its configuration entry away"
    );
    assert!(membership(&cl, 1).voters() == [1, 2, 3]);
    grow_learner(&mut cl, 1, 4, 100);
    assert_eq!(membership(&cl, 4), membership(&cl, 1));
    assert!(
        cl.restores.get(&4).copied().unwrap_or(0) >= 1,
        "caught up by snapshot"
    );
    assert_eq!(cl.node(4).commit_index(), cl.node(1).commit_index());
}

#[test]
fn a_joining_node_takes_no_snapshot_before_it_knows_the_configuration() {
    // The cluster's log starts with entries written before configurations were recorded in
    // the log (by an older version): a joining node cannot know who the members were there.
    let mut cl = Cluster::with_config(3, 12, |c| {
        c.snapshot_after_entries = Some(2);
        c.compaction_keep_entries = 100;
    });
    cl.report_applied = true;
    let old: Vec<Entry> = (1..=6)
        .map(|index| Entry {
            term: 1,
            index,
            kind: EntryKind::Normal,
            data: Bytes::from_static(b"old"),
        })
        .collect();
    for id in 1..=3 {
        let d = cl.disks.get_mut(&id).expect("disk");
        d.entries = old.clone();
        d.hard_state = raft_proto_core::HardState {
            term: 1,
            vote: 0,
            commit: 6,
        };
        cl.restart(id);
    }
    assert!(cl.elect(1));
    settle(&mut cl);
    assert_eq!(
        cl.node(1).membership().0,
        7,
        "the first leader recorded the configuration"
    );
    grow_learner(&mut cl, 1, 4, 100);
    let taken: Vec<Index> = cl
        .trace
        .iter()
        .filter(|(n, _)| *n == 4)
        .filter_map(|(_, o)| match o {
            Output::TakeSnapshot { meta } => {
                assert!(
                    !meta.membership.is_empty(),
                    "snapshot without a configuration: {meta:?}"
                );
                Some(meta.last_index)
            }
            _ => None,
        })
        .collect();
    assert!(
        !taken.is_empty(),
        "node 4 snapshots once it knows the configuration"
    );
    assert!(taken.iter().all(|&i| i >= 7), "{taken:?}");
    assert_eq!(membership(&cl, 4), membership(&cl, 1));
}

#[test]
fn a_recovered_log_with_a_bad_configuration_entry_is_refused() {
    use raft_proto_core::{Config, HardState, RaftNode, RecoveredState, RecoveryError};
    let bad = Entry {
        term: 1,
        index: 1,
        kind: EntryKind::Config,
        data: Bytes::from_static(b"\x01garbage"),
    };
    let rec = RecoveredState {
        hard_state: HardState {
            term: 1,
            vote: 0,
            commit: 0,
        },
        snapshot: None,
        entries: vec![bad],
    };
    assert!(matches!(
        RaftNode::new(Config::new(1, vec![1, 2, 3]), rec),
        Err(RecoveryError::BadConfigEntry { index: 1, .. })
    ));
    // And one from a leader is refused without touching the log.
    let mut cl = Cluster::new(3, 13);
    let good = Entry {
        term: 1,
        index: 1,
        kind: EntryKind::Config,
        data: encode_membership(&Membership::with_voters([1, 2, 3])),
    };
    let forged = Entry {
        index: 2,
        data: Bytes::from_static(b"\x01\xff"),
        ..good.clone()
    };
    cl.step(
        2,
        Input::Receive {
            from: 1,
            msg: Message::AppendEntries(raft_proto_core::message::AppendEntries {
                term: 1,
                prev: LogId::default(),
                entries: vec![good, forged],
                commit: 0,
            }),
        },
    );
    assert_eq!(cl.node(2).last_log_id().index, 0 as Index);
    assert!(
        cl.count_outputs(2, |o| matches!(
            o,
            Output::Event(Event::InvalidInput { .. })
        )) > 0
    );
}
