//! Scenario tests of snapshots, compaction, InstallSnapshot and the bounded log cache.

mod common;

use bytes::Bytes;
use common::{decode_state, Cluster};
use raft_proto_core::message::{InstallSnapshot, InstallSnapshotResponse, SnapshotAck};
use raft_proto_core::{
    Config, Entry, EntryKind, Event, HardState, Input, LogId, Membership, Message, Output,
    ProposeError, RaftNode, RecoveredState, ReplicationState, Role, SnapshotMeta,
};

/// Snapshots every 5 entries keeping 2 below, 16-byte chunks, 48 bytes in flight, no cache.
fn tight(c: &mut Config) {
    c.snapshot_after_entries = Some(5);
    c.snapshot_after_bytes = None;
    c.compaction_keep_entries = 2;
    c.snapshot_chunk_bytes = 16;
    c.max_snapshot_inflight_bytes = 48;
    c.log_cache_bytes = 0;
}

fn cluster(tweak: impl Fn(&mut Config)) -> Cluster {
    let mut c = Cluster::with_config(3, 7, tweak);
    c.report_applied = true;
    assert!(c.elect(1));
    c
}

fn write(c: &mut Cluster, leader: u64, from: u64, n: u64) {
    for i in from..from + n {
        let data: &'static [u8] = Box::leak(format!("value-{i}").into_bytes().into_boxed_slice());
        c.propose(leader, i, data);
        c.deliver_all();
    }
}

/// A few heartbeat rounds, so that every follower learns the latest commit index.
fn settle(c: &mut Cluster) {
    for _ in 0..4 {
        c.tick_all();
        c.deliver_all();
    }
}

/// Ticks and delivers (serving reads) until `done` holds.
fn run_until(c: &mut Cluster, what: &str, done: impl Fn(&Cluster) -> bool) {
    for _ in 0..200 {
        if done(c) {
            return;
        }
        c.tick_all();
        c.deliver_all();
        c.serve_reads();
        c.deliver_all();
    }
    panic!("never happened: {what}");
}

fn snapshots_taken(c: &Cluster, id: u64) -> Vec<u64> {
    c.trace
        .iter()
        .filter(|(n, _)| *n == id)
        .filter_map(|(_, o)| match o {
            Output::TakeSnapshot { meta } => Some(meta.last_index),
            _ => None,
        })
        .collect()
}

fn installs(c: &Cluster, id: u64) -> usize {
    c.count_outputs(id, |o| matches!(o, Output::InstallSnapshot { .. }))
}

/// Every node's state machine holds the same entries as the leader's (after heartbeats).
fn assert_converged(c: &mut Cluster) {
    settle(c);
    let leader = c.leaders()[0];
    let truth = c.applied_data(leader);
    for &id in &c.ids {
        assert_eq!(
            c.applied_data(id),
            truth,
            "node {id} differs from leader {leader}"
        );
    }
}

#[test]
fn the_policy_takes_snapshots_and_compaction_keeps_a_tail() {
    let mut c = cluster(tight);
    write(&mut c, 1, 1, 12);
    let taken = snapshots_taken(&c, 1);
    assert!(!taken.is_empty(), "a snapshot every 5 entries");
    assert!(taken.windows(2).all(|w| w[1] >= w[0] + 5), "{taken:?}");
    let last = *taken.last().expect("one");
    let st = c.node(1).status();
    assert_eq!(
        st.snapshot.latest.as_ref().map(|m| m.last_index),
        Some(last)
    );
    assert_eq!(
        st.first_index,
        last - 2 + 1,
        "two entries kept below the snapshot"
    );
    assert_eq!(c.node(1).log_floor().index, last - 2);
    let compacts: Vec<u64> = c
        .trace
        .iter()
        .filter_map(|(n, o)| match o {
            Output::Compact { through } if *n == 1 => Some(*through),
            _ => None,
        })
        .collect();
    assert_eq!(compacts.last(), Some(&(last - 2)));
    assert!(c.disks[&1].entries.iter().all(|e| e.index > last - 2));
    // The snapshot carries the membership at its index.
    let meta = st.snapshot.latest.expect("latest");
    assert_eq!(*meta.membership, Membership::with_voters([1, 2, 3]));
    // With no cache, nothing applied stays in memory.
    assert_eq!(st.log_entries_in_memory, 0);
    assert_converged(&mut c);
}

#[test]
fn a_follower_behind_the_compacted_log_catches_up_by_snapshot() {
    let mut c = cluster(tight);
    c.isolate(3);
    write(&mut c, 1, 1, 20);
    c.heal();
    assert!(c.node(1).log_floor().index > c.node(3).last_log_id().index);
    // Heartbeats bring node 3 back; the leader finds its log compacted away and streams the
    // snapshot in 16-byte chunks.
    for _ in 0..4 {
        c.tick_all();
        c.deliver_all();
    }
    assert_eq!(installs(&c, 3), 1, "node 3 installed one snapshot");
    assert_eq!(c.restores.get(&3), Some(&1));
    let chunks = c
        .trace
        .iter()
        .filter(|(n, o)| {
            *n == 1
                && matches!(
                    o,
                    Output::Send {
                        msg: Message::InstallSnapshot(_),
                        to: 3
                    }
                )
        })
        .count();
    assert!(
        chunks > 3,
        "the snapshot travelled in several chunks ({chunks})"
    );
    assert!(c.trace.iter().any(|(n, o)| *n == 1
        && matches!(
            o,
            Output::Event(Event::SnapshotSent {
                to: 3,
                installed: true,
                ..
            })
        )));
    let peer = c
        .node(1)
        .status()
        .peers
        .into_iter()
        .find(|p| p.id == 3)
        .expect("peer 3");
    assert_eq!(peer.state, ReplicationState::Replicate);
    assert_eq!(peer.matched, c.node(1).last_log_id().index);
    assert_converged(&mut c);
    // And it keeps replicating normally afterwards.
    write(&mut c, 1, 100, 3);
    assert_converged(&mut c);
}

#[test]
fn the_install_is_acknowledged_only_after_the_restore() {
    let mut c = cluster(tight);
    c.isolate(3);
    write(&mut c, 1, 1, 20);
    c.heal();
    c.report_applied = false;
    for _ in 0..4 {
        c.tick_all();
        c.deliver_all();
    }
    assert_eq!(installs(&c, 3), 1);
    let snap = c
        .node(3)
        .status()
        .snapshot
        .latest
        .expect("installed")
        .last_index;
    let peer = |c: &Cluster| {
        c.node(1)
            .status()
            .peers
            .into_iter()
            .find(|p| p.id == 3)
            .expect("3")
    };
    assert_eq!(
        peer(&c).state,
        ReplicationState::Snapshot,
        "no ack before the restore is reported"
    );
    assert!(peer(&c).matched < snap);
    c.report_applied = true;
    c.step(3, Input::Applied { index: snap });
    c.deliver_all();
    assert_eq!(peer(&c).state, ReplicationState::Replicate);
    assert_eq!(peer(&c).matched, c.node(1).last_log_id().index);
}

#[test]
fn the_restore_waits_for_the_install_to_be_durable() {
    let mut c = cluster(tight);
    c.isolate(3);
    write(&mut c, 1, 1, 20);
    c.heal();
    c.auto_persist = false;
    for _ in 0..4 {
        c.tick_all();
        c.deliver_all();
        c.persist_all(1);
        c.persist_all(2);
    }
    assert_eq!(installs(&c, 3), 1);
    assert_eq!(
        c.restores.get(&3),
        None,
        "not before the install is durable"
    );
    let after_install = c
        .trace
        .iter()
        .filter(|(n, _)| *n == 3)
        .skip_while(|(_, o)| !matches!(o, Output::InstallSnapshot { .. }))
        .filter(|(_, o)| matches!(o, Output::Apply { .. }))
        .count();
    assert_eq!(
        after_install, 0,
        "nothing after the snapshot applies before its restore"
    );
    c.persist_all(3);
    assert_eq!(c.restores.get(&3), Some(&1));
    c.auto_persist = true;
    for _ in 0..2 {
        c.tick_all();
        c.deliver_all();
    }
    assert_converged(&mut c);
}

/// Drops every `n`-th snapshot chunk on its way to node 3.
fn deliver_dropping_chunks(c: &mut Cluster, every: usize) -> usize {
    let mut seen = 0;
    let mut dropped = 0;
    for _ in 0..100_000 {
        let Some((from, to, msg)) = c.net.pop_front() else {
            return dropped;
        };
        if let Message::InstallSnapshot(_) = &msg {
            seen += 1;
            if seen % every == 0 {
                dropped += 1;
                continue;
            }
        }
        c.step(to, Input::Receive { from, msg });
    }
    panic!("no quiescence");
}

#[test]
fn lost_chunks_are_resent_from_where_the_follower_stands() {
    let mut c = cluster(tight);
    c.isolate(3);
    write(&mut c, 1, 1, 20);
    c.heal();
    let mut dropped = 0;
    for _ in 0..1000 {
        c.tick_all();
        dropped += deliver_dropping_chunks(&mut c, 3);
        if installs(&c, 3) > 0 {
            break;
        }
    }
    assert!(dropped > 0);
    assert_eq!(
        installs(&c, 3),
        1,
        "installed despite {dropped} lost chunks"
    );
    let resends = c
        .trace
        .iter()
        .filter(|(n, o)| {
            *n == 3
                && matches!(o, Output::Send { msg: Message::InstallSnapshotResponse(r), .. }
                    if matches!(r.result, SnapshotAck::Resend { .. }))
        })
        .count();
    assert!(resends > 0, "the follower asked for the missing chunks");
    for _ in 0..3 {
        c.tick_all();
        c.deliver_all();
    }
    assert_converged(&mut c);
}

#[test]
fn a_follower_restarted_mid_transfer_starts_it_over() {
    let mut c = cluster(tight);
    c.isolate(3);
    write(&mut c, 1, 1, 20);
    c.heal();
    c.hold_reads = true;
    run_until(&mut c, "a transfer to node 3", |c| {
        c.node(3).status().snapshot.receiving.is_some()
    });
    // Let a few more chunks through.
    for _ in 0..2 {
        c.serve_reads();
        c.deliver_all();
    }
    let got = c.node(3).status().snapshot.receiving.expect("receiving").1;
    assert!(got > 0);
    c.restart(3);
    assert_eq!(c.node(3).status().snapshot.receiving, None);
    c.hold_reads = false;
    for _ in 0..20 {
        c.serve_reads();
        c.tick_all();
        c.deliver_all();
        if installs(&c, 3) > 0 {
            break;
        }
    }
    assert_eq!(installs(&c, 3), 1);
    let restart_asks = c.trace.iter().any(|(n, o)| {
        *n == 3
            && matches!(o, Output::Send { msg: Message::InstallSnapshotResponse(r), .. }
                if r.result == SnapshotAck::Resend { from: 0 })
    });
    assert!(
        restart_asks,
        "the restarted follower asked for the transfer from the start"
    );
    for _ in 0..3 {
        c.tick_all();
        c.deliver_all();
    }
    assert_converged(&mut c);
}

#[test]
fn a_newer_snapshot_replaces_the_one_in_transfer_once_the_log_grew_far() {
    let mut c = cluster(tight);
    c.isolate(3);
    write(&mut c, 1, 1, 20);
    c.heal();
    c.hold_reads = true;
    run_until(&mut c, "a transfer to node 3", |c| {
        c.node(3).status().snapshot.receiving.is_some()
    });
    let first = c.node(3).status().snapshot.receiving.expect("receiving").0;
    // While node 3 is cut off again, the leader defers its next snapshot (that would restart
    // the transfer) until the log since the last one is four times the policy's threshold.
    c.isolate(3);
    c.hold_reads = false;
    write(&mut c, 1, 50, 8);
    c.serve_reads();
    let deferred = c
        .node(1)
        .status()
        .snapshot
        .latest
        .expect("latest")
        .last_index;
    assert_eq!(deferred, first, "no new snapshot while sending one");
    write(&mut c, 1, 60, 14);
    c.serve_reads();
    let newer = c
        .node(1)
        .status()
        .snapshot
        .latest
        .expect("latest")
        .last_index;
    assert!(newer > first);
    c.heal();
    for _ in 0..20 {
        c.tick_all();
        c.deliver_all();
    }
    let installed = c
        .node(3)
        .status()
        .snapshot
        .latest
        .expect("installed")
        .last_index;
    assert_eq!(
        installed, newer,
        "the transfer switched to the newer snapshot"
    );
    assert_converged(&mut c);
}

#[test]
fn a_new_leader_sends_its_own_snapshot_from_the_start() {
    let mut c = cluster(tight);
    c.isolate(3);
    write(&mut c, 1, 1, 20);
    c.heal();
    c.hold_reads = true;
    run_until(&mut c, "a transfer to node 3", |c| {
        c.node(3).status().snapshot.receiving.is_some()
    });
    // Leader 1 goes away; node 2 takes over and has its own snapshots.
    c.isolate(1);
    c.hold_reads = false;
    c.reads.clear();
    for _ in 0..200 {
        c.tick(2);
        c.tick(3);
        c.deliver_all();
        if c.node(2).role() == Role::Leader {
            break;
        }
    }
    assert_eq!(c.node(2).role(), Role::Leader);
    assert_eq!(
        c.node(3).status().snapshot.receiving,
        None,
        "a new leader abandons the transfer"
    );
    for _ in 0..10 {
        c.tick(2);
        c.tick(3);
        c.deliver_all();
    }
    assert_eq!(installs(&c, 3), 1);
    assert_eq!(c.applied_data(3), c.applied_data(2));
}

#[test]
fn a_snapshot_older_than_the_commit_index_is_not_installed() {
    let mut c = cluster(tight);
    write(&mut c, 1, 1, 8);
    let committed = c.node(2).commit_index();
    let term = c.node(1).term();
    let stale = InstallSnapshot {
        term,
        meta: SnapshotMeta {
            last_index: committed - 2,
            last_term: term,
            membership: Membership::with_voters([1, 2, 3]).into(),
        },
        size: 4,
        offset: 0,
        data: Bytes::from_static(b"abcd"),
    };
    let before = c.applied_data(2);
    c.step(
        2,
        Input::Receive {
            from: 1,
            msg: Message::InstallSnapshot(Box::new(stale)),
        },
    );
    assert_eq!(installs(&c, 2), 0);
    assert_eq!(
        c.node(2).commit_index(),
        committed,
        "committed state never goes back"
    );
    assert_eq!(c.applied_data(2), before);
    let answer = c
        .net
        .iter()
        .find(|(f, t, _)| *f == 2 && *t == 1)
        .map(|m| m.2.clone());
    assert!(
        matches!(answer, Some(Message::AppendEntriesResponse(_))),
        "the leader hears where the log stands: {answer:?}"
    );
}

fn lone_follower() -> RaftNode {
    let mut cfg = Config::new(2, [1, 2, 3]);
    tight(&mut cfg);
    let rec = RecoveredState {
        hard_state: HardState {
            term: 2,
            vote: 1,
            commit: 0,
        },
        ..RecoveredState::default()
    };
    RaftNode::new(cfg, rec).expect("node")
}

fn chunk(offset: u64, data: &'static [u8], size: u64, index: u64) -> Input {
    Input::Receive {
        from: 1,
        msg: Message::InstallSnapshot(Box::new(InstallSnapshot {
            term: 2,
            meta: SnapshotMeta {
                last_index: index,
                last_term: 2,
                membership: Membership::with_voters([1, 2, 3]).into(),
            },
            size,
            offset,
            data: Bytes::from_static(data),
        })),
    }
}

fn answers(outs: &[Output]) -> Vec<SnapshotAck> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Send {
                msg: Message::InstallSnapshotResponse(InstallSnapshotResponse { result, .. }),
                ..
            } => Some(*result),
            _ => None,
        })
        .collect()
}

fn invalid(outs: &[Output]) -> bool {
    outs.iter()
        .any(|o| matches!(o, Output::Event(Event::InvalidInput { .. })))
}

#[test]
fn bad_chunks_are_refused_without_harm() {
    let mut n = lone_follower();
    // A chunk of a transfer never begun.
    let outs = n.step(chunk(4, b"efgh", 8, 10));
    assert_eq!(answers(&outs), vec![SnapshotAck::Resend { from: 0 }]);
    assert!(!outs
        .iter()
        .any(|o| matches!(o, Output::SnapshotChunk { .. })));
    // A forged size: the chunk runs past it.
    let outs = n.step(chunk(0, b"abcdefgh", 4, 10));
    assert!(invalid(&outs));
    assert!(!outs
        .iter()
        .any(|o| matches!(o, Output::SnapshotChunk { .. })));
    // An offset that overflows.
    let outs = n.step(chunk(u64::MAX - 1, b"abcd", u64::MAX, 10));
    assert!(invalid(&outs));
    // A proper start, then an out-of-order chunk, then a duplicate.
    let outs = n.step(chunk(0, b"abcd", 12, 10));
    assert_eq!(
        answers(&outs),
        vec![SnapshotAck::Received { next_offset: 4 }]
    );
    let outs = n.step(chunk(8, b"ijkl", 12, 10));
    assert_eq!(answers(&outs), vec![SnapshotAck::Resend { from: 4 }]);
    let outs = n.step(chunk(0, b"abcd", 12, 10));
    assert_eq!(answers(&outs), vec![SnapshotAck::Resend { from: 4 }]);
    // A chunk claiming another size for the same snapshot is another transfer.
    let outs = n.step(chunk(4, b"efgh", 16, 10));
    assert_eq!(answers(&outs), vec![SnapshotAck::Resend { from: 0 }]);
    // The snapshot's term may not exceed the leader's.
    let mut bad = chunk(0, b"abcd", 4, 10);
    if let Input::Receive {
        msg: Message::InstallSnapshot(m),
        ..
    } = &mut bad
    {
        m.meta.last_term = 3;
    }
    let outs = n.step(bad);
    assert!(invalid(&outs));
    assert_eq!(n.commit_index(), 0, "nothing was installed");
    // The rest of the proper transfer still completes.
    n.step(chunk(4, b"efgh", 12, 10));
    let outs = n.step(chunk(8, b"ijkl", 12, 10));
    assert!(outs
        .iter()
        .any(|o| matches!(o, Output::InstallSnapshot { .. })));
    assert_eq!(n.commit_index(), 10);
}

#[test]
fn a_node_restarts_from_its_snapshot_and_the_log_after_it() {
    let mut c = cluster(tight);
    write(&mut c, 1, 1, 13);
    let snap = c.disks[&2].snapshot.as_ref().expect("snapshot").0.clone();
    c.restart(2);
    let st = c.node(2).status();
    assert_eq!(
        st.applied, snap.last_index,
        "the snapshot counts as applied"
    );
    // The tail kept below the snapshot comes back too (its first entry is the floor).
    let kept_from = c.disks[&2]
        .entries
        .first()
        .map(|e| e.index)
        .expect("a kept log");
    assert!(kept_from <= snap.last_index);
    assert_eq!(st.first_index, kept_from + 1);
    // Its state machine comes back from the snapshot and the entries after it apply.
    let state = decode_state(&c.disks[&2].snapshot.as_ref().expect("s").1);
    assert_eq!(state.last().map(|e| e.index), Some(snap.last_index));
    for _ in 0..3 {
        c.tick_all();
        c.deliver_all();
    }
    assert_converged(&mut c);
}

#[test]
fn applying_after_a_restart_is_capped_by_the_backlog() {
    let entries: Vec<Entry> = (1..=100)
        .map(|i| Entry {
            term: 1,
            index: i,
            kind: EntryKind::Normal,
            data: Bytes::from(vec![7u8; 100]),
        })
        .collect();
    let mut cfg = Config::new(1, [1, 2, 3]);
    cfg.max_apply_backlog_bytes = 1_000;
    cfg.max_apply_bytes = 500;
    let rec = RecoveredState {
        hard_state: HardState {
            term: 1,
            vote: 1,
            commit: 100,
        },
        snapshot: None,
        entries,
    };
    let mut n = RaftNode::new(cfg, rec).expect("node");
    let outs = n.step(Input::Tick);
    let handed: Vec<u64> = outs
        .iter()
        .filter_map(|o| match o {
            Output::Apply { entries } => entries.last().map(|e| e.index),
            _ => None,
        })
        .collect();
    assert!(!handed.is_empty());
    let last = *handed.last().expect("one");
    assert!(
        last < 20,
        "only about 1,000 bytes handed out before any is applied: {last}"
    );
    let outs = n.step(Input::Applied { index: last });
    assert!(
        outs.iter().any(|o| matches!(o, Output::Apply { .. })),
        "more once applied"
    );
}

#[test]
fn a_lagging_follower_gets_evicted_entries_read_back_not_a_snapshot() {
    let mut c = cluster(|cfg| {
        cfg.log_cache_bytes = 0;
        cfg.snapshot_after_entries = None;
        cfg.snapshot_after_bytes = None;
    });
    c.isolate(3);
    write(&mut c, 1, 1, 30);
    assert_eq!(
        c.node(1).status().log_entries_in_memory,
        0,
        "all applied entries left memory"
    );
    c.heal();
    for _ in 0..4 {
        c.tick_all();
        c.deliver_all();
    }
    let fetches = c.count_outputs(1, |o| matches!(o, Output::FetchEntries { to: 3, .. }));
    assert!(fetches > 0);
    assert_eq!(installs(&c, 3), 0);
    assert_converged(&mut c);
}

#[test]
fn a_follower_within_the_kept_tail_catches_up_by_appends() {
    let mut c = cluster(|cfg| {
        tight(cfg);
        cfg.snapshot_after_entries = Some(10);
        cfg.compaction_keep_entries = 8;
    });
    write(&mut c, 1, 1, 3);
    c.isolate(3);
    write(&mut c, 1, 10, 9);
    assert!(c.node(1).log_floor().index < c.node(3).last_log_id().index);
    c.heal();
    for _ in 0..4 {
        c.tick_all();
        c.deliver_all();
    }
    assert_eq!(installs(&c, 3), 0, "the kept tail sufficed");
    assert_converged(&mut c);
}

#[test]
fn a_transfer_under_a_steady_write_load_finishes() {
    let mut c = cluster(tight);
    c.isolate(3);
    write(&mut c, 1, 1, 20);
    c.heal();
    // One write per round while the transfer is under way: the policy would take a new
    // snapshot every five entries, which must not restart the transfer each time.
    for i in 100..300 {
        let data: &'static [u8] = Box::leak(format!("load-{i}").into_bytes().into_boxed_slice());
        c.propose(1, i, data);
        c.tick_all();
        c.deliver_all();
        if installs(&c, 3) > 0 {
            break;
        }
    }
    assert_eq!(installs(&c, 3), 1, "the transfer finished under load");
    assert_converged(&mut c);
}

#[test]
fn a_follower_busy_with_its_own_snapshot_gets_the_leaders_later() {
    let mut c = cluster(tight);
    write(&mut c, 1, 1, 3);
    settle(&mut c);
    c.isolate(3);
    write(&mut c, 1, 10, 20);
    // Node 3 starts a snapshot of its own, not finished yet, when the leader's chunks come.
    c.auto_snapshot = false;
    c.step(3, Input::TriggerSnapshot);
    assert!(c.snapshot_requests.contains_key(&3));
    c.heal();
    for _ in 0..6 {
        c.tick_all();
        c.deliver_all();
    }
    assert_eq!(
        installs(&c, 3),
        0,
        "chunks are ignored while it takes its own"
    );
    c.auto_snapshot = true;
    c.take_requested_snapshots();
    run_until(&mut c, "the install", |c| installs(c, 3) == 1);
    assert_converged(&mut c);
}

#[test]
fn late_chunks_of_an_older_snapshot_leave_the_transfer_alone() {
    let mut n = lone_follower();
    let outs = n.step(chunk(0, b"abcd", 12, 10));
    assert_eq!(
        answers(&outs),
        vec![SnapshotAck::Received { next_offset: 4 }]
    );
    // The start of an older snapshot (index 8) from the same leader arrives late.
    let outs = n.step(chunk(0, b"old!", 8, 8));
    assert!(answers(&outs).is_empty());
    assert_eq!(n.status().snapshot.receiving, Some((10, 4, 12)));
    let outs = n.step(chunk(4, b"efgh", 12, 10));
    assert_eq!(
        answers(&outs),
        vec![SnapshotAck::Received { next_offset: 8 }]
    );
}

#[test]
fn a_snapshot_larger_than_the_limit_is_refused() {
    let mut cfg = Config::new(2, [1, 2, 3]);
    cfg.max_snapshot_bytes = 10;
    let rec = RecoveredState {
        hard_state: HardState {
            term: 2,
            vote: 1,
            commit: 0,
        },
        ..RecoveredState::default()
    };
    let mut n = RaftNode::new(cfg, rec).expect("node");
    let outs = n.step(chunk(0, b"abcd", 11, 10));
    assert!(invalid(&outs));
    assert!(!outs
        .iter()
        .any(|o| matches!(o, Output::SnapshotChunk { .. })));
}

#[test]
fn an_install_replaces_a_log_that_ends_before_the_snapshot() {
    // Node 3 holds the leader's first entries, then stops hearing from it; the leader
    // compacts everything below its snapshot.
    let mut c = cluster(|cfg| {
        tight(cfg);
        cfg.snapshot_after_entries = Some(8);
        cfg.compaction_keep_entries = 0;
    });
    write(&mut c, 1, 1, 4);
    c.isolate(3);
    write(&mut c, 1, 10, 12);
    c.heal();
    run_until(&mut c, "an install on node 3", |c| installs(c, 3) == 1);
    let snap = c.node(3).status().snapshot.latest.expect("installed");
    assert!(snap.last_index > 5);
    assert_converged(&mut c);
    let last = c.node(1).last_log_id();
    assert_eq!(c.node(3).last_log_id(), last);
    assert_eq!(c.node(3).log_term(snap.last_index), Some(snap.last_term));
}

#[test]
fn after_a_restart_a_leader_serves_a_follower_within_the_kept_tail_by_appends() {
    let mut c = cluster(|cfg| {
        tight(cfg);
        cfg.snapshot_after_entries = Some(10);
        cfg.compaction_keep_entries = 8;
    });
    write(&mut c, 1, 1, 3);
    c.isolate(3);
    write(&mut c, 1, 10, 9);
    // The leader restarts (its log tail below the snapshot comes back from its disk) and is
    // elected again; node 3 lags by less than the kept tail.
    c.restart(1);
    c.heal();
    c.isolate(2);
    let mut led = false;
    for _ in 0..400 {
        c.tick(1);
        c.tick(3);
        c.deliver_all();
        if c.node(1).role() == Role::Leader {
            led = true;
            break;
        }
    }
    assert!(led, "node 1 leads again");
    c.heal();
    for _ in 0..6 {
        c.tick_all();
        c.deliver_all();
    }
    assert_eq!(installs(&c, 3), 0, "appends from the kept tail sufficed");
    assert_converged(&mut c);
}

#[test]
fn a_failed_requested_snapshot_is_retried_after_a_wait() {
    let mut c = cluster(|cfg| {
        cfg.snapshot_after_entries = None;
        cfg.snapshot_after_bytes = None;
    });
    write(&mut c, 1, 1, 3);
    c.auto_snapshot = false;
    c.step(2, Input::TriggerSnapshot);
    let meta = c.snapshot_requests.remove(&2).expect("asked for");
    c.step(
        2,
        Input::SnapshotFailed {
            index: meta.last_index,
        },
    );
    c.step(2, Input::Tick);
    assert_eq!(snapshots_taken(&c, 2).len(), 1, "not at once");
    for _ in 0..120 {
        c.tick_all();
        c.deliver_all();
    }
    assert_eq!(snapshots_taken(&c, 2).len(), 2, "retried after the wait");
}

#[test]
fn a_failed_snapshot_by_bytes_is_retried_after_a_wait_not_another_budget() {
    let mut c = cluster(|cfg| {
        cfg.snapshot_after_entries = None;
        cfg.snapshot_after_bytes = Some(300);
    });
    c.auto_snapshot = false;
    write(&mut c, 1, 1, 12);
    let meta = c.snapshot_requests.remove(&2).expect("the policy asked");
    c.step(
        2,
        Input::SnapshotFailed {
            index: meta.last_index,
        },
    );
    let before = snapshots_taken(&c, 2).len();
    for _ in 0..120 {
        c.tick_all();
        c.deliver_all();
    }
    assert_eq!(
        snapshots_taken(&c, 2).len(),
        before + 1,
        "retried without new writes"
    );
}

#[test]
fn a_snapshot_can_be_asked_for_and_a_failure_is_retried_later() {
    let mut c = cluster(|cfg| {
        cfg.snapshot_after_entries = None;
        cfg.snapshot_after_bytes = None;
    });
    write(&mut c, 1, 1, 3);
    assert!(snapshots_taken(&c, 2).is_empty());
    c.auto_snapshot = false;
    c.step(2, Input::TriggerSnapshot);
    let meta = c.snapshot_requests.get(&2).cloned().expect("asked for");
    assert_eq!(meta.last_index, c.node(2).status().applying);
    // While it is being taken, another request waits.
    c.step(2, Input::TriggerSnapshot);
    assert_eq!(snapshots_taken(&c, 2).len(), 1);
    c.snapshot_requests.clear();
    c.step(
        2,
        Input::SnapshotFailed {
            index: meta.last_index,
        },
    );
    // The pending request is honoured once the failed one is out of the way.
    c.step(2, Input::Tick);
    assert_eq!(snapshots_taken(&c, 2).len(), 2);
    c.take_requested_snapshots();
    assert_eq!(
        c.node(2).status().snapshot.latest.map(|m| m.last_index),
        Some(meta.last_index)
    );
    // A report for a snapshot never asked for is refused.
    let outs = c
        .nodes
        .get_mut(&2)
        .expect("n")
        .step(Input::SnapshotTaken { index: 99 });
    assert!(invalid(&outs));
}

#[test]
fn proposals_and_elections_work_across_compaction() {
    let mut c = cluster(tight);
    write(&mut c, 1, 1, 12);
    c.isolate(1);
    let mut leader = None;
    for _ in 0..300 {
        c.tick(2);
        c.tick(3);
        c.deliver_all();
        if let Some(&l) = c.leaders().iter().find(|&&l| l != 1) {
            leader = Some(l);
            break;
        }
    }
    let leader = leader.expect("a new leader");
    write(&mut c, leader, 200, 12);
    c.heal();
    for _ in 0..30 {
        c.tick_all();
        c.deliver_all();
    }
    assert_eq!(c.leaders(), vec![leader]);
    assert_converged(&mut c);
    let refused = c
        .nodes
        .get_mut(&1)
        .expect("1")
        .step(Input::Propose(raft_proto_core::Proposal {
            request: 9,
            data: Bytes::from_static(b"x"),
        }));
    assert!(refused.iter().any(|o| matches!(
        o,
        Output::Proposed {
            result: Err(ProposeError::NotLeader { .. }),
            ..
        }
    )));
    let _ = LogId::default();
}

#[test]
fn the_policies_take_one_snapshot_per_threshold() {
    for (entries, bytes) in [(Some(100), None), (None, Some(100 * 33))] {
        let mut c = cluster(|cfg| {
            cfg.snapshot_after_entries = entries;
            cfg.snapshot_after_bytes = bytes;
            cfg.compaction_keep_entries = 10;
        });
        write(&mut c, 1, 1, 1000);
        for id in 1..=3 {
            let taken = snapshots_taken(&c, id);
            // Entries of `value-N` are 31 to 33 bytes with the per-entry overhead.
            assert!(
                (9..=11).contains(&taken.len()),
                "node {id} with {entries:?} / {bytes:?}: {taken:?}"
            );
        }
    }
}
