//! [`Op`], one operation on the cluster, and its byte encoding: the fuzz input is a sequence of
//! them ([`Op::read`]); the corpus generator writes them ([`Op::write`]). The committed seed
//! corpora depend on this encoding.

use bytes::Bytes;
use raft_proto_core::message::{
    AppendEntries, AppendEntriesResponse, AppendResult, Heartbeat, HeartbeatResponse,
    InstallSnapshot, InstallSnapshotResponse, RequestVote, RequestVoteResponse, SnapshotAck,
};
use raft_proto_core::{Entry, EntryKind, LogId, Membership, Message, NodeId, SnapshotMeta};

use super::{IDS, MEMBER_IDS};
use crate::{Input, Output};

/// Number of opcodes.
const OPCODES: u8 = 21;

/// One operation. The byte encoding is `opcode % 21` followed by the arguments.
#[derive(Debug, Clone)]
pub enum Op {
    /// Deliver queued message `i % len`.
    Deliver(u8),
    /// Drop queued message `i % len`.
    Drop(u8),
    /// Duplicate queued message `i % len` (the copy goes to the back).
    Duplicate(u8),
    /// One tick on a node.
    Tick(u8),
    /// `n % 32 + 1` ticks on a node.
    TickMany(u8, u8),
    /// A proposal with this payload to a node.
    Propose(u8, Vec<u8>),
    /// Make all of a node's pending durable steps durable and report it.
    PersistAll(u8),
    /// Make a node's oldest pending durable step durable and report it.
    PersistOne(u8),
    /// Crash a node and restart it from its durable state.
    Crash(u8),
    /// Tell a node everything handed to its state machine was applied.
    AckApplied(u8),
    /// Inject a message from `SENDERS[from % 7]` to node `to`.
    Inject { from: u8, to: u8, msg: Message },
    /// Deliver up to 64 messages in queue order.
    DeliverMany,
    /// Take the snapshot a node asked for (store it, report `SnapshotTaken`).
    TakeSnapshot(u8),
    /// Fail the snapshot a node asked for (report `SnapshotFailed`).
    FailSnapshot(u8),
    /// Serve a node's pending read `i % len` (entries or a snapshot chunk).
    ServeRead(u8, u8),
    /// Serve all of a node's pending reads, oldest first.
    ServeReads(u8),
    /// `TriggerSnapshot` on a node.
    TriggerSnapshot(u8),
    /// Three rounds of: every node persists everything, serves its reads and reports applied;
    /// then up to 64 messages are delivered.
    Settle,
    /// `n % 4` < 3: cut node `IDS[n % 4]` off (messages to and from it are dropped, the
    /// previous cut heals); 3: heal.
    Isolate(u8),
    /// A membership change on a node: `k % 4` = 0: add learner 4 (a node that never answers);
    /// 1: remove node 4; 2: promote node 4 (refused: it never catches up); 3: remove
    /// `IDS[(k / 4) % 3]`.
    Change(u8, u8),
    /// A leadership transfer on a node: to `IDS[k % 4]`, or to the most caught-up voter (3).
    Transfer(u8, u8),
}

pub(super) fn node_of(b: u8) -> NodeId {
    IDS[b as usize % IDS.len()]
}

fn log_id(inp: &mut Input) -> LogId {
    LogId {
        term: inp.num(),
        index: inp.num(),
    }
}

fn read_membership(inp: &mut Input) -> Membership {
    let mask = inp.u8();
    let pick = |ids: &[NodeId], bits: u8| -> Vec<NodeId> {
        ids.iter()
            .enumerate()
            .filter(|(k, _)| bits & (1 << k) != 0)
            .map(|(_, &id)| id)
            .collect()
    };
    let voters = pick(&MEMBER_IDS, mask & 0x1F);
    let outgoing = if mask & 0x20 != 0 {
        IDS.to_vec()
    } else {
        vec![]
    };
    let learners = if mask & 0x40 != 0 { vec![4] } else { vec![] };
    // An impossible combination (a learner that votes, no voters) decodes as no membership,
    // which receivers refuse.
    Membership::new(voters, outgoing, learners, Default::default()).unwrap_or_default()
}

fn membership_mask(m: &Membership) -> u8 {
    let mut mask = 0u8;
    for (k, id) in MEMBER_IDS.iter().enumerate() {
        if m.voters().contains(id) {
            mask |= 1 << k;
        }
    }
    if m.is_joint() {
        mask |= 0x20;
    }
    if !m.learners().is_empty() {
        mask |= 0x40;
    }
    mask
}

fn read_message(inp: &mut Input) -> Message {
    match inp.u8() % 9 {
        0 => {
            let term = inp.num();
            let flags = inp.u8();
            Message::RequestVote(RequestVote {
                term,
                pre_vote: flags & 1 == 1,
                last_log: log_id(inp),
                transfer: flags & 2 == 2,
            })
        }
        1 => Message::RequestVoteResponse(RequestVoteResponse {
            term: inp.num(),
            pre_vote: inp.u8() & 1 == 1,
            granted: inp.u8() & 1 == 1,
        }),
        2 => {
            let term = inp.num();
            let prev = log_id(inp);
            let commit = inp.num();
            let n = inp.u8() % 5;
            let mut entries = Vec::new();
            for i in 0..n {
                let kind = match inp.u8() & 3 {
                    0 => EntryKind::Normal,
                    2 => EntryKind::Config,
                    _ => EntryKind::Noop,
                };
                // Usually consecutive after prev (as a real leader sends); sometimes not.
                let index = match inp.u8() {
                    0xFF => inp.num(),
                    _ => prev.index.wrapping_add(1 + u64::from(i)),
                };
                let term = inp.num();
                let data = if kind == EntryKind::Config {
                    raft_proto_core::codec::encode_membership(&read_membership(inp))
                } else {
                    Bytes::from(inp.bytes(8))
                };
                entries.push(Entry {
                    term,
                    index,
                    kind,
                    data,
                });
            }
            Message::AppendEntries(AppendEntries {
                term,
                prev,
                entries,
                commit,
            })
        }
        3 => Message::AppendEntriesResponse(AppendEntriesResponse {
            term: inp.num(),
            result: if inp.u8() & 1 == 0 {
                AppendResult::Success {
                    match_index: inp.num(),
                }
            } else {
                AppendResult::Reject {
                    rejected: inp.num(),
                    hint: log_id(inp),
                }
            },
        }),
        4 => Message::Heartbeat(Heartbeat {
            term: inp.num(),
            commit: inp.num(),
        }),
        5 => Message::HeartbeatResponse(HeartbeatResponse { term: inp.num() }),
        6 => {
            let term = inp.num();
            let meta = SnapshotMeta {
                last_index: inp.num(),
                last_term: inp.num(),
                membership: read_membership(inp).into(),
            };
            let offset = inp.num();
            let data = Bytes::from(inp.bytes(24));
            let end = offset.wrapping_add(data.len() as u64);
            // Mostly a size consistent with the chunk (the last one, or more to come).
            let size = match inp.u8() % 3 {
                0 => end,
                1 => end.wrapping_add(inp.num()),
                _ => inp.num(),
            };
            Message::InstallSnapshot(Box::new(InstallSnapshot {
                term,
                meta,
                size,
                offset,
                data,
            }))
        }
        7 => Message::InstallSnapshotResponse(InstallSnapshotResponse {
            term: inp.num(),
            snapshot: log_id(inp),
            result: if inp.u8() & 1 == 0 {
                SnapshotAck::Received {
                    next_offset: inp.num(),
                }
            } else {
                SnapshotAck::Resend { from: inp.num() }
            },
        }),
        _ => Message::TimeoutNow(raft_proto_core::message::TimeoutNow { term: inp.num() }),
    }
}

fn write_message(msg: &Message, out: &mut Output) {
    match msg {
        Message::RequestVote(m) => {
            out.u8(0)
                .num(m.term)
                .u8(m.pre_vote as u8 | (m.transfer as u8) << 1)
                .num(m.last_log.term)
                .num(m.last_log.index);
        }
        Message::RequestVoteResponse(m) => {
            out.u8(1)
                .num(m.term)
                .u8(m.pre_vote as u8)
                .u8(m.granted as u8);
        }
        Message::AppendEntries(m) => {
            out.u8(2)
                .num(m.term)
                .num(m.prev.term)
                .num(m.prev.index)
                .num(m.commit)
                .u8(m.entries.len() as u8);
            for e in &m.entries {
                out.u8(e.kind.to_byte()).u8(0).num(e.term);
                match e.kind {
                    EntryKind::Config => {
                        let m =
                            raft_proto_core::codec::decode_membership(&e.data).unwrap_or_default();
                        out.u8(membership_mask(&m));
                    }
                    _ => {
                        out.bytes(&e.data);
                    }
                }
            }
        }
        Message::AppendEntriesResponse(m) => match m.result {
            AppendResult::Success { match_index } => {
                out.u8(3).num(m.term).u8(0).num(match_index);
            }
            AppendResult::Reject { rejected, hint } => {
                out.u8(3)
                    .num(m.term)
                    .u8(1)
                    .num(rejected)
                    .num(hint.term)
                    .num(hint.index);
            }
        },
        Message::Heartbeat(m) => {
            out.u8(4).num(m.term).num(m.commit);
        }
        Message::HeartbeatResponse(m) => {
            out.u8(5).num(m.term);
        }
        Message::InstallSnapshot(m) => {
            out.u8(6)
                .num(m.term)
                .num(m.meta.last_index)
                .num(m.meta.last_term)
                .u8(membership_mask(&m.meta.membership))
                .num(m.offset)
                .bytes(&m.data)
                .u8(2)
                .num(m.size);
        }
        Message::InstallSnapshotResponse(m) => {
            out.u8(7)
                .num(m.term)
                .num(m.snapshot.term)
                .num(m.snapshot.index);
            match m.result {
                SnapshotAck::Received { next_offset } => out.u8(0).num(next_offset),
                SnapshotAck::Resend { from } => out.u8(1).num(from),
            };
        }
        Message::TimeoutNow(m) => {
            out.u8(8).num(m.term);
        }
    }
}

impl Op {
    /// Reads one operation.
    pub fn read(inp: &mut Input) -> Op {
        match inp.u8() % OPCODES {
            0 => Op::Deliver(inp.u8()),
            1 => Op::Drop(inp.u8()),
            2 => Op::Duplicate(inp.u8()),
            3 => Op::Tick(inp.u8()),
            4 => Op::TickMany(inp.u8(), inp.u8()),
            5 => Op::Propose(inp.u8(), inp.bytes(16)),
            6 => Op::PersistAll(inp.u8()),
            7 => Op::PersistOne(inp.u8()),
            8 => Op::Crash(inp.u8()),
            9 => Op::AckApplied(inp.u8()),
            10 => Op::Inject {
                from: inp.u8(),
                to: inp.u8(),
                msg: read_message(inp),
            },
            11 => Op::DeliverMany,
            12 => Op::TakeSnapshot(inp.u8()),
            13 => Op::FailSnapshot(inp.u8()),
            14 => Op::ServeRead(inp.u8(), inp.u8()),
            15 => Op::ServeReads(inp.u8()),
            16 => Op::TriggerSnapshot(inp.u8()),
            17 => Op::Settle,
            18 => Op::Isolate(inp.u8()),
            19 => Op::Change(inp.u8(), inp.u8()),
            _ => Op::Transfer(inp.u8(), inp.u8()),
        }
    }

    /// Writes the operation in the encoding [`Op::read`] reads (for the corpus generator).
    pub fn write(&self, out: &mut Output) {
        match self {
            Op::Deliver(i) => out.u8(0).u8(*i),
            Op::Drop(i) => out.u8(1).u8(*i),
            Op::Duplicate(i) => out.u8(2).u8(*i),
            Op::Tick(n) => out.u8(3).u8(*n),
            Op::TickMany(n, k) => out.u8(4).u8(*n).u8(*k),
            Op::Propose(n, d) => out.u8(5).u8(*n).bytes(d),
            Op::PersistAll(n) => out.u8(6).u8(*n),
            Op::PersistOne(n) => out.u8(7).u8(*n),
            Op::Crash(n) => out.u8(8).u8(*n),
            Op::AckApplied(n) => out.u8(9).u8(*n),
            Op::Inject { from, to, msg } => {
                out.u8(10).u8(*from).u8(*to);
                write_message(msg, out);
                out
            }
            Op::DeliverMany => out.u8(11),
            Op::TakeSnapshot(n) => out.u8(12).u8(*n),
            Op::FailSnapshot(n) => out.u8(13).u8(*n),
            Op::ServeRead(n, i) => out.u8(14).u8(*n).u8(*i),
            Op::ServeReads(n) => out.u8(15).u8(*n),
            Op::TriggerSnapshot(n) => out.u8(16).u8(*n),
            Op::Settle => out.u8(17),
            Op::Isolate(n) => out.u8(18).u8(*n),
            Op::Change(n, k) => out.u8(19).u8(*n).u8(*k),
            Op::Transfer(n, k) => out.u8(20).u8(*n).u8(*k),
        };
    }
}
