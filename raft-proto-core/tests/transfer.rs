//! Leadership transfer (thesis section 3.10): to a named voter or the most caught-up one, with
//! the target brought up to date first, proposals refused meanwhile, the lease bypassed for
//! that one election, and an abort after an election timeout.
mod common;

use bytes::Bytes;
use common::Cluster;
use raft_proto_core::{
    ChangeStep, Event, Input, Message, NodeId, Output, Proposal, ProposeError, Role, TransferError,
};

fn cluster(n: u64, seed: u64) -> Cluster {
    let mut cl = Cluster::new(n, seed);
    cl.report_applied = true;
    assert!(cl.elect(1), "node 1 leads");
    heartbeat(&mut cl);
    cl
}

fn heartbeat(cl: &mut Cluster) {
    for _ in 0..2 {
        for id in cl.leaders() {
            cl.tick(id);
            cl.tick(id);
        }
        cl.deliver_all();
    }
}

fn transfer(
    cl: &mut Cluster,
    leader: NodeId,
    request: u64,
    to: Option<NodeId>,
) -> Result<NodeId, TransferError> {
    cl.step(leader, Input::TransferLeadership { request, to });
    cl.trace
        .iter()
        .rev()
        .find_map(|(n, o)| match o {
            Output::Transferring { request: r, result } if *n == leader && *r == request => {
                Some(*result)
            }
            _ => None,
        })
        .expect("answered")
}

fn propose(
    cl: &mut Cluster,
    id: NodeId,
    request: u64,
) -> Result<raft_proto_core::LogId, ProposeError> {
    cl.step(
        id,
        Input::Propose(Proposal {
            request,
            data: Bytes::from_static(b"x"),
        }),
    );
    cl.trace
        .iter()
        .rev()
        .find_map(|(n, o)| match o {
            Output::Proposed { request: r, result } if *n == id && *r == request => Some(*result),
            _ => None,
        })
        .expect("answered")
}

#[test]
fn an_up_to_date_target_takes_over_at_once_despite_the_lease() {
    let mut cl = cluster(3, 1);
    let term = cl.node(1).term();
    assert_eq!(transfer(&mut cl, 1, 1, Some(3)), Ok(3));
    // No tick passes: the followers are well inside the leader lease, and still vote.
    cl.deliver_all();
    assert_eq!(cl.leaders(), vec![3]);
    assert_eq!(cl.node(3).term(), term + 1);
    assert_eq!(cl.node(1).role(), Role::Follower);
    assert_eq!(cl.node(1).leader_hint(), Some(3));
    assert!(
        cl.count_outputs(3, |o| matches!(o, Output::Send { msg: Message::RequestVote(rv), .. } if rv.transfer && !rv.pre_vote)) > 0,
        "a real election, without a pre-vote, marked as a transfer"
    );
    assert_eq!(
        propose(&mut cl, 1, 7),
        Err(ProposeError::NotLeader {
            leader_hint: Some(3)
        })
    );
    assert!(propose(&mut cl, 3, 8).is_ok());
}

#[test]
fn a_lagging_target_is_brought_up_to_date_first_and_proposals_wait() {
    let mut cl = cluster(3, 2);
    cl.cut.extend([(1, 2), (2, 1)]);
    for r in 0..5 {
        propose(&mut cl, 1, r).expect("accepted");
    }
    cl.deliver_all();
    assert!(cl.node(2).last_log_id() < cl.node(1).last_log_id());
    assert_eq!(transfer(&mut cl, 1, 10, Some(2)), Ok(2));
    assert_eq!(
        propose(&mut cl, 1, 11),
        Err(ProposeError::TransferInProgress { to: 2 })
    );
    assert!(propose(&mut cl, 1, 11).unwrap_err().is_retryable());
    assert_eq!(
        cl.queued("TimeoutNow"),
        0,
        "the target must hold the whole log first"
    );
    cl.heal();
    for _ in 0..3 {
        cl.tick(1);
        cl.tick(1);
        cl.deliver_all();
    }
    assert_eq!(cl.leaders(), vec![2]);
    assert_eq!(cl.node(2).commit_index(), cl.node(2).last_log_id().index);
}

#[test]
fn a_transfer_that_does_not_complete_is_abandoned_after_an_election_timeout() {
    let mut cl = cluster(3, 3);
    let timeout = cl.node(1).config().election_timeout_ticks;
    assert_eq!(transfer(&mut cl, 1, 1, Some(2)), Ok(2));
    // The TimeoutNow is lost.
    cl.net
        .retain(|(_, _, m)| !matches!(m, Message::TimeoutNow(_)));
    cl.isolate(2);
    for _ in 0..timeout - 1 {
        cl.tick(1);
    }
    assert_eq!(
        propose(&mut cl, 1, 2),
        Err(ProposeError::TransferInProgress { to: 2 })
    );
    cl.tick(1);
    assert!(
        cl.count_outputs(1, |o| matches!(
            o,
            Output::Event(Event::TransferAborted { to: 2, .. })
        )) == 1
    );
    assert!(propose(&mut cl, 1, 3).is_ok(), "proposals are taken again");
    assert_eq!(cl.node(1).role(), Role::Leader);
}

#[test]
fn bad_transfers_are_refused_and_change_nothing() {
    let mut cl = cluster(3, 4);
    cl.add_node(4);
    cl.step(
        1,
        Input::ChangeMembership {
            request: 50,
            steps: vec![ChangeStep::AddLearner {
                id: 4,
                data: Bytes::new(),
            }],
        },
    );
    cl.deliver_all();
    heartbeat(&mut cl);
    assert_eq!(
        transfer(&mut cl, 1, 1, Some(4)),
        Err(TransferError::NotAVoter(4))
    );
    assert_eq!(
        transfer(&mut cl, 1, 2, Some(9)),
        Err(TransferError::UnknownNode(9))
    );
    assert_eq!(
        transfer(&mut cl, 2, 3, Some(3)),
        Err(TransferError::NotLeader {
            leader_hint: Some(1)
        })
    );
    assert_eq!(
        transfer(&mut cl, 1, 4, Some(1)),
        Ok(1),
        "already leads: nothing to do"
    );
    assert!(propose(&mut cl, 1, 5).is_ok(), "no transfer started");
    // A voter not heard from for an election timeout is unreachable.
    cl.isolate(3);
    let timeout = cl.node(1).config().election_timeout_ticks;
    for _ in 0..timeout / 2 {
        cl.tick(1);
        cl.tick(1);
        cl.deliver_all();
    }
    assert!(matches!(
        transfer(&mut cl, 1, 6, Some(3)),
        Err(TransferError::Unreachable { id: 3, .. })
    ));
    assert_eq!(cl.node(1).role(), Role::Leader);
    // One at a time.
    assert_eq!(transfer(&mut cl, 1, 7, Some(2)), Ok(2));
    assert_eq!(
        transfer(&mut cl, 1, 8, Some(2)),
        Err(TransferError::InProgress { to: 2 })
    );
    // Membership changes wait too.
    cl.step(
        1,
        Input::ChangeMembership {
            request: 9,
            steps: vec![ChangeStep::Remove { id: 4 }],
        },
    );
    assert!(cl.trace.iter().any(|(n, o)| *n == 1
        && matches!(
            o,
            Output::Proposed {
                request: 9,
                result: Err(ProposeError::TransferInProgress { to: 2 })
            }
        )));
}

#[test]
fn without_a_target_the_most_caught_up_live_voter_is_chosen() {
    let mut cl = cluster(5, 5);
    // Node 2 is cut off and falls behind; 3 is dead; 4 and 5 are in sync.
    cl.isolate(3);
    cl.cut.extend([(1, 2), (2, 1)]);
    for r in 0..3 {
        propose(&mut cl, 1, r).expect("accepted");
    }
    cl.deliver_all();
    cl.heal();
    cl.isolate(3);
    let timeout = cl.node(1).config().election_timeout_ticks;
    for _ in 0..timeout {
        cl.tick(1);
        // Node 2 answers heartbeats but never receives entries: alive and behind.
        while let Some((from, to, msg)) = cl.net.pop_front() {
            let entries = matches!(&msg, Message::AppendEntries(a) if !a.entries.is_empty());
            if (to == 2 && entries) || cl.cut.contains(&(from, to)) {
                continue;
            }
            cl.step(to, Input::Receive { from, msg });
        }
    }
    let peers = cl.node(1).status().peers;
    assert!(peers[0].matched < peers[2].matched, "{peers:?}");
    let chosen = transfer(&mut cl, 1, 9, None).expect("a target");
    assert_eq!(chosen, 4, "in sync, heard lately, lowest id among equals");
    cl.deliver_all();
    assert_eq!(cl.leaders(), vec![4]);
    // With every other voter silent there is nobody to hand over to.
    let mut cl = cluster(3, 6);
    cl.isolate(1);
    for _ in 0..cl.node(1).config().election_timeout_ticks * 2 {
        cl.tick(1);
    }
    if cl.node(1).role() == Role::Leader {
        assert_eq!(
            transfer(&mut cl, 1, 1, None),
            Err(TransferError::NoCandidate)
        );
    }
}
