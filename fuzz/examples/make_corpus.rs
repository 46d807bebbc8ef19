//! Writes the seed corpora under fuzz/corpus/TARGET/: `cargo run --example make_corpus`
//! (from fuzz/). Deterministic; rerunning overwrites the same files.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use raft_driver_tokio::protocol::{
    encode_request, encode_response, ClientRequest, ClientResponse, NodeStatus, PeerReport,
};
use raft_fuzz::core::{encode, Op};
use raft_kv::{Command, KvStore, Op as KvOp, Response};
use raft_proto_core::codec::Codec;
use raft_proto_core::message::{
    AppendEntries, AppendEntriesResponse, AppendResult, Heartbeat, HeartbeatResponse, RequestVote,
    RequestVoteResponse,
};
use raft_proto_core::{Entry, EntryKind, LogId, Message, Role};

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
            }),
        ),
        (
            "pre_vote",
            Message::RequestVote(RequestVote {
                term: 5,
                pre_vote: true,
                last_log,
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
    ];
    for (name, msg) in msgs {
        let frame = codec.encode(1, 2, &msg).expect("encode");
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
    ];
    for (name, req) in reqs {
        save(
            "client_decode",
            &format!("client_request_{name}"),
            &encode_request(cluster, &req),
        );
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
    ];
    for (name, resp) in resps {
        save(
            "client_decode",
            &format!("client_response_{name}"),
            &encode_response(cluster, &resp),
        );
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

fn main() {
    wire();
    kv();
    client();
    core();
    storage();
    eprintln!(
        "seed corpora written under {}/corpus",
        env!("CARGO_MANIFEST_DIR")
    );
}
