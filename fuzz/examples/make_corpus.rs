//! Writes the seed corpora under fuzz/corpus/TARGET/: `cargo run --example make_corpus`
//! (from fuzz/). Deterministic; rerunning overwrites the same files.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use raft_driver_tokio::protocol::{
    decode_request, decode_response, encode_request, encode_response, ClientRequest,
    ClientResponse, MemberChange, MemberReport, MemberRole, MembershipReport, NodeStatus,
    PeerReport, SnapshotDone, SnapshotReport, SnapshotSending,
};
use raft_fuzz::core::{encode, encode_state, run_cluster, Op};
use raft_kv::{Command, KvStore, Op as KvOp, Response};
use raft_proto_core::codec::Codec;
use raft_proto_core::message::{
    AppendEntries, AppendEntriesResponse, AppendResult, Heartbeat, HeartbeatResponse,
    InstallSnapshot, InstallSnapshotResponse, RequestVote, RequestVoteResponse, SnapshotAck,
};
use raft_proto_core::{Entry, EntryKind, LogId, Membership, Message, Role, SnapshotMeta};

fn dir(target: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&d).expect("corpus dir");
    d
}

fn save(target: &str, name: &str, bytes: &[u8]) {
    std::fs::write(dir(target).join(name), bytes).expect("write seed");
}

fn entry(term: u64, index: u64, data: &'static [u8]) -> Entry {
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

fn wire() {
    let codec = Codec::new(raft_fuzz::wire::CLUSTER_ID);
    let last_log = LogId { term: 3, index: 7 };
    let msgs = [
        (
            "request_vote",
            Message::RequestVote(RequestVote {
                term: 4,
                pre_vote: false,
                last_log,
                transfer: false,
            }),
        ),
        (
            "transfer_vote",
            Message::RequestVote(RequestVote {
                term: 6,
                pre_vote: false,
                last_log,
                transfer: true,
            }),
        ),
        (
            "timeout_now",
            Message::TimeoutNow(raft_proto_core::message::TimeoutNow { term: 4 }),
        ),
        (
            "pre_vote",
            Message::RequestVote(RequestVote {
                term: 5,
                pre_vote: true,
                last_log,
                transfer: false,
            }),
        ),
        (
            "vote_response",
            Message::RequestVoteResponse(RequestVoteResponse {
                term: 4,
                pre_vote: false,
                granted: true,
            }),
        ),
        (
            "append_empty",
            Message::AppendEntries(AppendEntries {
                term: 4,
                prev: last_log,
                entries: vec![],
                commit: 6,
            }),
        ),
        (
            "append_entries",
            Message::AppendEntries(AppendEntries {
                term: 4,
                prev: last_log,
                entries: vec![
                    entry(4, 8, b""),
                    entry(4, 9, b"hello"),
                    entry(4, 10, b"world!"),
                ],
                commit: 7,
            }),
        ),
        (
            "append_big_numbers",
            Message::AppendEntries(AppendEntries {
                term: u64::MAX,
                prev: LogId {
                    term: 1 << 40,
                    index: 1 << 50,
                },
                entries: vec![entry(u64::MAX, (1 << 50) + 1, b"x")],
                commit: 1 << 33,
            }),
        ),
        (
            "append_success",
            Message::AppendEntriesResponse(AppendEntriesResponse {
                term: 4,
                result: AppendResult::Success { match_index: 10 },
            }),
        ),
        (
            "append_reject",
            Message::AppendEntriesResponse(AppendEntriesResponse {
                term: 4,
                result: AppendResult::Reject {
                    rejected: 9,
                    hint: LogId { term: 2, index: 5 },
                },
            }),
        ),
        (
            "heartbeat",
            Message::Heartbeat(Heartbeat {
                term: 4,
                commit: 10,
            }),
        ),
        (
            "heartbeat_response",
            Message::HeartbeatResponse(HeartbeatResponse { term: 4 }),
        ),
        (
            "install_snapshot",
            Message::InstallSnapshot(Box::new(InstallSnapshot {
                term: 4,
                meta: SnapshotMeta {
                    last_index: 7,
                    last_term: 3,
                    membership: Membership::new(
                        vec![1, 2, 3],
                        vec![1, 2, 4],
                        vec![5],
                        Default::default(),
                    )
                    .expect("a valid membership")
                    .into(),
                },
                size: 40,
                offset: 16,
                data: Bytes::from_static(b"sixteen bytes..."),
            })),
        ),
        (
            "install_snapshot_empty",
            Message::InstallSnapshot(Box::new(InstallSnapshot {
                term: 4,
                meta: SnapshotMeta {
                    last_index: 7,
                    last_term: 3,
                    membership: Membership::with_voters([1, 2, 3]).into(),
                },
                size: 0,
                offset: 0,
                data: Bytes::new(),
            })),
        ),
        (
            "install_snapshot_received",
            Message::InstallSnapshotResponse(InstallSnapshotResponse {
                term: 4,
                snapshot: last_log,
                result: SnapshotAck::Received { next_offset: 32 },
            }),
        ),
        (
            "install_snapshot_resend",
            Message::InstallSnapshotResponse(InstallSnapshotResponse {
                term: 4,
                snapshot: last_log,
                result: SnapshotAck::Resend { from: 0 },
            }),
        ),
    ];
    for (name, msg) in msgs {
        let frame = codec.encode(1, 2, &msg).expect("encode");
        let env = codec.decode(frame.clone()).expect("a seed frame decodes");
        assert_eq!(env.msg, msg, "seed {name}");
        save("wire_decode", name, &frame);
    }
}

fn kv() {
    let cmds = [
        ("put", Command::new(7, 1, KvOp::put("key", "value"))),
        ("get", Command::new(7, 2, KvOp::get("key"))),
        ("delete", Command::new(0, 0, KvOp::delete("key"))),
        (
            "cas",
            Command::new(
                u64::MAX,
                300,
                KvOp::cas(
                    "k",
                    Some(Bytes::from_static(b"old")),
                    Some(Bytes::from_static(b"new")),
                ),
            ),
        ),
        ("cas_none", Command::new(1, 1, KvOp::cas("k", None, None))),
        ("put_empty", Command::new(1, 2, KvOp::put("", ""))),
    ];
    let mut store = KvStore::default();
    for (i, (name, cmd)) in cmds.iter().enumerate() {
        let enc = cmd.encode().expect("encode command");
        save("client_decode", &format!("command_{name}"), &enc);
        store.apply(i as u64 + 1, &enc).expect("apply");
    }
    let b = |s: &'static str| Some(Bytes::from_static(s.as_bytes()));
    let resps = [
        ("put", Response::Put { previous: None }),
        ("get", Response::Get { value: b("v") }),
        ("delete", Response::Delete { previous: b("v") }),
        (
            "cas",
            Response::Cas {
                succeeded: true,
                current: b("old"),
            },
        ),
        ("expired", Response::SessionExpired),
        (
            "invalid",
            Response::Invalid {
                reason: "bad version".into(),
            },
        ),
    ];
    for (name, r) in resps {
        save(
            "client_decode",
            &format!("response_{name}"),
            &r.encode().expect("encode response"),
        );
    }
    save(
        "client_decode",
        "snapshot_empty",
        &KvStore::default().snapshot(),
    );
    save("client_decode", "snapshot_small", &store.snapshot());
}

/// Client protocol frames (`raft-driver-tokio`), every request and response kind, for the
/// cluster id `client_decode` decodes with.
fn client() {
    let cluster = raft_fuzz::wire::CLUSTER_ID;
    let put = Command::new(7, 1, KvOp::put("key", "value"))
        .encode()
        .expect("encode command");
    let reqs = [
        ("propose", ClientRequest::Propose { command: put }),
        (
            "propose_empty",
            ClientRequest::Propose {
                command: Bytes::new(),
            },
        ),
        ("status", ClientRequest::Status),
        ("snapshot", ClientRequest::Snapshot),
        (
            "change_membership",
            ClientRequest::ChangeMembership {
                steps: vec![
                    MemberChange::AddLearner {
                        id: 4,
                        address: "10.0.0.4:7000".into(),
                    },
                    MemberChange::Promote { id: 5 },
                    MemberChange::Remove { id: 2 },
                    MemberChange::SetAddress {
                        id: 1,
                        address: "[::1]:7000".into(),
                    },
                ],
            },
        ),
        ("transfer", ClientRequest::TransferLeader { to: Some(3) }),
        ("transfer_any", ClientRequest::TransferLeader { to: None }),
    ];
    for (name, req) in reqs {
        let frame = encode_request(cluster, &req);
        assert_eq!(decode_request(cluster, frame.clone()).as_ref(), Ok(&req));
        save("client_decode", &format!("client_request_{name}"), &frame);
    }
    let peer = |id: u64, address: &str, matched: u64, connected: bool| PeerReport {
        id,
        address: address.into(),
        matched,
        next: matched + 1,
        replicating: matched > 0,
        inflight: 2,
        active: connected,
        connected,
        snapshot: (!connected).then_some(SnapshotSending {
            index: 100,
            acked: 48,
            total: 4_096,
        }),
    };
    let member = |id: u64, role: MemberRole, address: &str| MemberReport {
        id,
        role,
        address: address.into(),
    };
    let joint = MembershipReport {
        index: 118,
        joint: true,
        committed: false,
        members: vec![
            member(1, MemberRole::Voter, "10.0.0.1:7000"),
            member(2, MemberRole::Leaving, "10.0.0.2:7000"),
            member(4, MemberRole::Joining, "10.0.0.4:7000"),
            member(5, MemberRole::Learner, ""),
        ],
    };
    let status = NodeStatus {
        id: 1,
        cluster_id: cluster,
        role: Role::Leader,
        term: 5,
        vote: 1,
        leader: Some(1),
        commit: 120,
        applied: 119,
        last_index: 121,
        persisted: 121,
        peers: vec![
            peer(2, "10.0.0.2:7000", 120, true),
            peer(3, "node3.example:7000", 0, false),
        ],
        leader_changes: 3,
        proposals: 4_096,
        storage_batches: 80,
        storage_writes: 95,
        storage_entries: 121,
        storage_micros: 250_000,
        bytes_sent: 1 << 20,
        bytes_received: 1 << 16,
        uptime_ms: 3_600_000,
        snapshot: SnapshotReport {
            index: 100,
            term: 5,
            bytes: 4_096,
            age_ms: 60_000,
            taking: Some(119),
            receiving: None,
            first_index: 91,
            log_entries_in_memory: 30,
            log_bytes_in_memory: 3_000,
            taken: 2,
            sent: 1,
            installed: 0,
        },
        membership: joint.clone(),
        transfer: Some(2),
    };
    // A follower receiving a snapshot from the leader.
    let receiving = NodeStatus {
        id: 3,
        role: Role::Follower,
        vote: 0,
        leader: Some(1),
        commit: 5,
        applied: 5,
        last_index: 5,
        persisted: 5,
        peers: vec![],
        snapshot: SnapshotReport {
            index: 0,
            term: 0,
            bytes: 0,
            age_ms: 0,
            taking: None,
            receiving: Some(SnapshotSending {
                index: 100,
                acked: 1_024,
                total: 4_096,
            }),
            first_index: 1,
            log_entries_in_memory: 5,
            log_bytes_in_memory: 500,
            taken: 0,
            sent: 0,
            installed: 1,
        },
        membership: MembershipReport::default(),
        transfer: None,
        ..status.clone()
    };
    let get = Response::Get { value: None }
        .encode()
        .expect("encode response");
    let resps = [
        (
            "applied",
            ClientResponse::Applied {
                index: 120,
                response: get,
            },
        ),
        (
            "not_leader",
            ClientResponse::NotLeader {
                leader: Some(2),
                leader_addr: Some("10.0.0.2:7100".into()),
            },
        ),
        (
            "not_leader_unknown",
            ClientResponse::NotLeader {
                leader: None,
                leader_addr: None,
            },
        ),
        (
            "unknown",
            ClientResponse::Unknown {
                reason: "leadership changed".into(),
            },
        ),
        (
            "rejected",
            ClientResponse::Rejected {
                reason: "too many pending proposals".into(),
            },
        ),
        ("status", ClientResponse::Status(Box::new(status))),
        (
            "status_receiving",
            ClientResponse::Status(Box::new(receiving)),
        ),
        (
            "snapshot",
            ClientResponse::Snapshot(SnapshotDone {
                index: 120,
                term: 5,
                bytes: 4_321,
                new: true,
            }),
        ),
        (
            "snapshot_old",
            ClientResponse::Snapshot(SnapshotDone {
                index: 0,
                term: 0,
                bytes: 0,
                new: false,
            }),
        ),
        ("membership", ClientResponse::Membership(joint)),
        ("transferred", ClientResponse::Transferred { leader: 3, term: 6 }),
    ];
    for (name, resp) in resps {
        let frame = encode_response(cluster, &resp);
        assert_eq!(decode_response(cluster, frame.clone()).as_ref(), Ok(&resp));
        save("client_decode", &format!("client_response_{name}"), &frame);
    }
}

fn core() {
    let all = |f: fn(u8) -> Op| (0..3).map(f).collect::<Vec<_>>();
    let round = || {
        let mut ops = vec![Op::DeliverMany];
        ops.extend(all(Op::PersistAll));
        ops.push(Op::DeliverMany);
        ops.extend(all(Op::PersistAll));
        ops.push(Op::DeliverMany);
        ops
    };
    // Elect node 1, then propose through every node a few times.
    let mut elect = vec![Op::TickMany(0, 31)];
    for _ in 0..3 {
        elect.extend(round());
    }
    let mut replicate = elect.clone();
    for i in 0..4u8 {
        replicate.extend(all(|n| Op::Propose(n, vec![b'a' + n])));
        replicate.extend(round());
        replicate.push(Op::Tick(i));
        replicate.extend(round());
    }
    replicate.push(Op::AckApplied(0));
    save("core_step", "elect", &encode(&elect));
    save("core_step", "replicate", &encode(&replicate));

    // Leader crashes mid-replication, another node takes over.
    let mut crash = replicate.clone();
    crash.extend(all(|n| Op::Propose(n, b"lost?".to_vec())));
    crash.push(Op::Crash(0));
    crash.push(Op::TickMany(1, 31));
    for _ in 0..3 {
        crash.extend(round());
    }
    crash.extend(all(|n| Op::Propose(n, b"after".to_vec())));
    for _ in 0..3 {
        crash.extend(round());
    }
    save("core_step", "leader_crash", &encode(&crash));

    // Lossy, duplicating network with partial persistence.
    let mut lossy = vec![Op::TickMany(2, 31)];
    for i in 0..40u8 {
        lossy.push(match i % 7 {
            0 => Op::Duplicate(i),
            1 => Op::Drop(i),
            2 => Op::PersistOne(i),
            3 => Op::Propose(i, vec![i]),
            4 => Op::Tick(i),
            _ => Op::Deliver(i),
        });
        lossy.push(Op::Deliver(i.wrapping_mul(7)));
    }
    save("core_step", "lossy", &encode(&lossy));

    // Forged messages: from non-members (must be ignored) and from a member (taints the run).
    let mut forged = replicate.clone();
    let hb = Message::Heartbeat(Heartbeat {
        term: 1000,
        commit: 1000,
    });
    let vote = Message::RequestVote(RequestVote {
        term: 50,
        pre_vote: false,
        last_log: LogId {
            term: 50,
            index: 50,
        },
        transfer: false,
    });
    for from in [0u8, 4, 5, 6] {
        forged.push(Op::Inject {
            from,
            to: 1,
            msg: hb.clone(),
        });
        forged.push(Op::Inject {
            from,
            to: 2,
            msg: vote.clone(),
        });
    }
    forged.extend(round());
    forged.push(Op::Inject {
        from: 1,
        to: 2,
        msg: Message::AppendEntries(AppendEntries {
            term: 99,
            prev: LogId { term: 1, index: 1 },
            entries: vec![entry(99, 2, b"forged")],
            commit: 2,
        }),
    });
    forged.push(Op::Inject {
        from: 3,
        to: 2,
        msg: Message::HeartbeatResponse(HeartbeatResponse { term: 99 }),
    });
    forged.extend(round());
    save("core_step", "forged", &encode(&forged));
}

/// Writes a core_step seed and prints what it makes the cluster do.
fn save_core(name: &str, ops: &[Op]) {
    let data = encode(ops);
    let cl = run_cluster(&data);
    let st = cl.stats();
    let per = |m: &std::collections::BTreeMap<u64, usize>| {
        [1, 2, 3].map(|id| m.get(&id).copied().unwrap_or(0))
    };
    eprintln!(
        "core_step/{name}: {} ops, {} bytes; committed {}, applied {:?}, floors {:?}, taken {:?}, \
         chunks {:?}, resends {:?}, installs {:?}, restores {:?}, fetches {:?}, crashes {:?}{}",
        ops.len(),
        data.len(),
        cl.committed_len(),
        [1, 2, 3].map(|id| cl.applied(id)),
        [1, 2, 3].map(|id| cl.node(id).log_floor().index),
        per(&st.taken),
        per(&st.chunks_sent),
        per(&st.resends),
        per(&st.installs),
        per(&st.restores),
        per(&st.fetches),
        per(&st.crashes),
        if cl.tainted() { " (tainted)" } else { "" },
    );
    save("core_step", name, &data);
}

/// Seeds for snapshots: taken, failed and triggered, compaction, a follower that catches up by
/// InstallSnapshot (with lost chunks, reads served out of order, crashes mid-transfer), reads
/// of evicted entries, and forged snapshot messages.
fn core_snapshots() {
    let elect = || {
        let mut ops = vec![Op::TickMany(0, 31)];
        for _ in 0..3 {
            ops.push(Op::Settle);
        }
        ops
    };
    // Nodes 1 and 2 take whatever snapshot they asked for.
    let take = || vec![Op::TakeSnapshot(0), Op::TakeSnapshot(1)];
    // Node 3 is cut off while node 1 commits `n` entries (settling after each), snapshots and
    // compacts; then the cut heals.
    let lagging = |n: u8| {
        let mut ops = elect();
        ops.push(Op::Isolate(2));
        for i in 0..n {
            ops.push(Op::Propose(0, vec![b'a' + i % 26, i]));
            ops.push(Op::Settle);
            ops.extend(take());
        }
        ops.push(Op::Isolate(3));
        ops
    };
    // Node 1 heartbeats, everything is carried out.
    let settle_round = || {
        let mut ops = vec![Op::Tick(0), Op::Settle];
        ops.extend(take());
        ops
    };

    let mut catch_up = lagging(16);
    for _ in 0..12 {
        catch_up.extend(settle_round());
    }
    catch_up.extend([
        Op::Propose(0, b"after".to_vec()),
        Op::Settle,
        Op::Tick(0),
        Op::Settle,
    ]);
    save_core("snapshot_catch_up", &catch_up);

    // The transfer loses chunks (and an answer): the follower asks for a resend.
    let mut lost = lagging(16);
    for i in 0..16u8 {
        lost.extend([
            Op::Tick(0),
            Op::PersistAll(0),
            Op::PersistAll(1),
            Op::PersistAll(2),
            Op::ServeReads(0),
            Op::Drop(i % 3),
            Op::DeliverMany,
            Op::AckApplied(2),
        ]);
    }
    for _ in 0..8 {
        lost.extend(settle_round());
    }
    save_core("snapshot_lost_chunks", &lost);

    // Reads served out of order (and late), duplicated chunks.
    let mut reorder = lagging(16);
    for i in 0..16u8 {
        reorder.extend([
            Op::Tick(0),
            Op::PersistAll(0),
            Op::PersistAll(1),
            Op::PersistAll(2),
            Op::ServeRead(0, 2),
            Op::ServeRead(0, i),
            Op::Duplicate(i),
            Op::DeliverMany,
            Op::AckApplied(2),
        ]);
    }
    for _ in 0..8 {
        reorder.extend(settle_round());
    }
    save_core("snapshot_reads_reordered", &reorder);

    // Crashes mid-transfer: the receiver loses the chunks it received; then it crashes with
    // the install not yet durable; later, with node 3 lagging again, the leader crashes in the
    // middle of a transfer and node 2 takes over.
    let step = |persist3: bool| {
        let mut ops = vec![Op::Tick(0), Op::PersistAll(0), Op::PersistAll(1)];
        if persist3 {
            ops.push(Op::PersistAll(2));
        }
        ops.extend([Op::ServeReads(0), Op::DeliverMany]);
        ops
    };
    let mut crash = lagging(16);
    crash.extend(step(true));
    crash.extend(step(true));
    crash.push(Op::Crash(2));
    for _ in 0..10 {
        crash.extend(step(false));
    }
    crash.push(Op::Crash(2));
    for _ in 0..4 {
        crash.extend(settle_round());
    }
    crash.push(Op::Isolate(2));
    for i in 0..16u8 {
        crash.extend([Op::Propose(0, vec![b'A' + i % 26, i]), Op::Settle]);
        crash.extend(take());
    }
    crash.push(Op::Isolate(3));
    crash.extend(step(true));
    crash.extend(step(true));
    crash.push(Op::Crash(0));
    crash.push(Op::TickMany(1, 31));
    for _ in 0..3 {
        crash.push(Op::Settle);
    }
    for _ in 0..8 {
        crash.extend([Op::Tick(1), Op::Settle]);
        crash.extend(take());
    }
    crash.extend([
        Op::Propose(1, b"after".to_vec()),
        Op::Settle,
        Op::Tick(1),
        Op::Settle,
    ]);
    save_core("snapshot_crash_mid_transfer", &crash);

    // A follower a few entries behind, none snapshotted yet: the leader reads the evicted
    // entries back (FetchEntries); then snapshots are failed, retried and triggered.
    let mut fetch = elect();
    fetch.push(Op::Isolate(2));
    for i in 0..3u8 {
        fetch.extend([Op::Propose(0, vec![b'f', i]), Op::Settle]);
    }
    fetch.extend([Op::FailSnapshot(0), Op::FailSnapshot(1), Op::Isolate(3)]);
    for _ in 0..4 {
        fetch.extend([Op::Tick(0), Op::Settle]);
    }
    fetch.extend([
        Op::TriggerSnapshot(0),
        Op::TriggerSnapshot(1),
        Op::TriggerSnapshot(2),
        Op::Propose(0, b"more".to_vec()),
        Op::Settle,
        Op::TakeSnapshot(0),
        Op::FailSnapshot(1),
        Op::TakeSnapshot(2),
        Op::TriggerSnapshot(1),
        Op::Settle,
        Op::TakeSnapshot(1),
        Op::Crash(1),
        Op::Settle,
        Op::Crash(0),
        Op::TickMany(2, 31),
        Op::Settle,
        Op::Settle,
        Op::Propose(2, b"last".to_vec()),
        Op::Settle,
        Op::Settle,
    ]);
    save_core("snapshot_fetch_fail_trigger", &fetch);

    // Snapshot messages from non-members, with valid-looking and impossible fields. Chunks are
    // leader messages, heard from anyone (they taint the run); answers from non-members are
    // ignored.
    let state = encode_state(&[entry(1, 1, b""), entry(1, 2, b"forged")]);
    let meta = |last_index, last_term, voters: &[u64]| SnapshotMeta {
        last_index,
        last_term,
        membership: Membership::with_voters(voters.iter().copied()).into(),
    };
    let chunk = |term, meta: SnapshotMeta, size, offset, data: Bytes| {
        Message::InstallSnapshot(Box::new(InstallSnapshot {
            term,
            meta,
            size,
            offset,
            data,
        }))
    };
    let forged_msgs = [
        chunk(
            1,
            meta(2, 1, &[1, 2, 3]),
            state.len() as u64,
            0,
            state.clone(),
        ),
        chunk(50, meta(100, 50, &[1, 2, 3]), 64, 16, state.slice(..4)),
        chunk(
            2,
            meta(9, 2, &[4, 99]),
            u64::MAX,
            u64::MAX - 1,
            state.slice(..2),
        ),
        chunk(3, meta(0, 0, &[]), 0, 0, Bytes::new()),
        Message::InstallSnapshotResponse(InstallSnapshotResponse {
            term: 1,
            snapshot: LogId { term: 1, index: 12 },
            result: SnapshotAck::Received {
                next_offset: u64::MAX,
            },
        }),
        Message::InstallSnapshotResponse(InstallSnapshotResponse {
            term: 1,
            snapshot: LogId { term: 1, index: 12 },
            result: SnapshotAck::Resend { from: 7 },
        }),
    ];
    let chunk_msg = |m: &Message| matches!(m, Message::InstallSnapshot(_));
    let mut nonmember = lagging(12);
    let mut chunks = lagging(12);
    for (k, msg) in forged_msgs.iter().enumerate() {
        for from in [0u8, 4, 5, 6] {
            let op = Op::Inject {
                from,
                to: k as u8,
                msg: msg.clone(),
            };
            if chunk_msg(msg) && from != 0 {
                chunks.push(op);
            } else {
                nonmember.push(op);
            }
        }
        nonmember.extend(settle_round());
        chunks.extend(settle_round());
    }
    for _ in 0..8 {
        nonmember.extend(settle_round());
        chunks.extend(settle_round());
    }
    save_core("snapshot_forged_nonmember", &nonmember);
    save_core("snapshot_forged_nonmember_chunks", &chunks);

    // The same from members (taints the run): a complete forged snapshot installed on node 3
    // (a decodable one and garbage), and answers with impossible offsets to the leader.
    let mut member = lagging(8);
    member.extend([
        Op::Inject {
            from: 1,
            to: 2,
            msg: chunk(
                1,
                meta(2, 1, &[1, 2, 3]),
                state.len() as u64,
                0,
                state.clone(),
            ),
        },
        Op::PersistAll(2),
        Op::AckApplied(2),
        Op::Inject {
            from: 1,
            to: 2,
            msg: chunk(
                1,
                meta(20, 1, &[1, 2, 3]),
                5,
                0,
                Bytes::from_static(b"\xFFjunk"),
            ),
        },
        Op::PersistAll(2),
        Op::AckApplied(2),
    ]);
    for msg in &forged_msgs[4..] {
        member.push(Op::Inject {
            from: 3,
            to: 0,
            msg: msg.clone(),
        });
        member.extend(settle_round());
    }
    for _ in 0..6 {
        member.extend(settle_round());
    }
    save_core("snapshot_forged_member", &member);
}

fn storage() {
    let db = raft_fuzz::storage::valid_db();
    save("storage_open", "valid_db", db);
    save("storage_open", "empty_ish", b"redb");
    // Patches for storage_corrupt: (offset u32 LE, byte).
    let patch = |ps: &[(u32, u8)]| {
        ps.iter()
            .flat_map(|(o, b)| o.to_le_bytes().into_iter().chain([*b]))
            .collect::<Vec<u8>>()
    };
    save("storage_corrupt", "no_patch", b"");
    save("storage_corrupt", "magic", &patch(&[(0, 0)]));
    save("storage_corrupt", "header", &patch(&[(64, 0xFF), (100, 1)]));
    save(
        "storage_corrupt",
        "spread",
        &patch(&[(4096, 1), (8192, 2), (12288, 3), (16384, 4)]),
    );
    save(
        "storage_corrupt",
        "tail",
        &patch(&[(db.len() as u32 - 1, 0xAA), (db.len() as u32 - 4096, 0x55)]),
    );
}

/// Seeds for membership changes and leadership transfer: a learner added (that never answers),
/// promoted in vain and removed, a second change while one is in flight, a member removed, and
/// transfers to each node and to the most caught-up one, under load.
fn core_membership() {
    let mut ops = vec![Op::TickMany(0, 31)];
    for _ in 0..3 {
        ops.push(Op::Settle);
    }
    ops.extend([
        Op::Change(0, 0),
        Op::Change(0, 1),
        Op::Settle,
        Op::Change(0, 2),
        Op::Propose(0, b"a".to_vec()),
        Op::Settle,
        Op::Change(0, 1),
        Op::Settle,
        Op::Transfer(0, 1),
        Op::Propose(0, b"refused".to_vec()),
        Op::Settle,
        Op::Transfer(1, 3),
        Op::Settle,
        Op::Propose(1, b"b".to_vec()),
        Op::Propose(2, b"c".to_vec()),
        Op::Settle,
    ]);
    save_core("membership_learner_and_transfers", &ops);

    // A member is removed (node 3, then the leader itself), with writes around.
    let mut remove = vec![Op::TickMany(0, 31)];
    for _ in 0..3 {
        remove.push(Op::Settle);
    }
    remove.extend([
        Op::Propose(0, b"x".to_vec()),
        Op::Change(0, 3 + 4 * 2),
        Op::Settle,
        Op::Propose(0, b"y".to_vec()),
        Op::Settle,
        Op::Change(0, 3),
        Op::Settle,
        Op::TickMany(1, 31),
        Op::Settle,
        Op::Propose(1, b"z".to_vec()),
        Op::Settle,
    ]);
    save_core("membership_removals", &remove);
}

fn main() {
    wire();
    kv();
    client();
    core();
    core_snapshots();
    core_membership();
    storage();
    eprintln!(
        "seed corpora written under {}/corpus",
        env!("CARGO_MANIFEST_DIR")
    );
}
