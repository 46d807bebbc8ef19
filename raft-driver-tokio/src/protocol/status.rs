//! A node's status as the client protocol carries it (`raftkv status`), and its encoding.
//!
//! Layout, after the frame header: id, cluster id, role, term, vote, leader (option), commit,
//! applied, last index, persisted, the peer list (u32 count, then per peer: id, address,
//! matched, next, replicating, in flight, active, connected, and the snapshot being sent as an
//! option of index, acknowledged bytes and total bytes), the nine counters, then the snapshot
//! report: latest index, term, bytes and age, the index being taken (option), the snapshot
//! being received (option of index, received, total), the log's first index, the entries and
//! bytes of log in memory, the counts of snapshots taken, sent and installed, then the
//! configuration in force (see [`super::membership`]) and the transfer's target (option).

use bytes::{BufMut, BytesMut};
use raft_proto_core::{Index, NodeId, Role, Term};

use super::membership::{membership_len, put_membership, read_membership};
use super::{
    put_bytes, put_len, put_opt_u64, role_byte, role_from, MembershipReport, ProtocolError, Reader,
    MAX_PEERS,
};

/// A node's view of itself and its peers, as `raftkv status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// This node.
    pub id: NodeId,
    /// The cluster it belongs to.
    pub cluster_id: u64,
    /// Its role.
    pub role: Role,
    /// Its current term.
    pub term: Term,
    /// Whom it voted for in this term (`0`: nobody).
    pub vote: NodeId,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Commit index.
    pub commit: Index,
    /// Highest index applied to the state machine.
    pub applied: Index,
    /// Last index in its log.
    pub last_index: Index,
    /// Last index known durable on its disk.
    pub persisted: Index,
    /// Per-peer replication state (filled in on the leader; followers report connectivity).
    pub peers: Vec<PeerReport>,
    /// How many times the known leader changed since start.
    pub leader_changes: u64,
    /// Proposals received since start.
    pub proposals: u64,
    /// Storage write transactions (one fsync each) since start.
    pub storage_batches: u64,
    /// `PersistWrite`s carried by those transactions.
    pub storage_writes: u64,
    /// Log entries written by those transactions.
    pub storage_entries: u64,
    /// Total time spent in storage writes, microseconds.
    pub storage_micros: u64,
    /// Bytes sent to peers.
    pub bytes_sent: u64,
    /// Bytes received from peers.
    pub bytes_received: u64,
    /// Milliseconds since the node started.
    pub uptime_ms: u64,
    /// Snapshots and the log they let the node compact.
    pub snapshot: SnapshotReport,
    /// The configuration in force here.
    pub membership: MembershipReport,
    /// The voter leadership is being handed to (leader only).
    pub transfer: Option<NodeId>,
}

/// One peer as seen from a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerReport {
    /// The peer.
    pub id: NodeId,
    /// Its configured peer address.
    pub address: String,
    /// Highest index known replicated on it (leader only; else 0).
    pub matched: Index,
    /// Next index to send it (leader only; else 0).
    pub next: Index,
    /// Whether replication to it is pipelining (leader only).
    pub replicating: bool,
    /// Messages in flight to it (leader only).
    pub inflight: u32,
    /// Whether it was heard from recently (leader only).
    pub active: bool,
    /// Whether this node currently has a connection to it for sending.
    pub connected: bool,
    /// A snapshot being sent to it (leader only).
    pub snapshot: Option<SnapshotSending>,
}

/// A snapshot on its way to a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotSending {
    /// The snapshot's last index.
    pub index: Index,
    /// Bytes the peer confirmed.
    pub acked: u64,
    /// The snapshot's size (0 until the first chunk was read).
    pub total: u64,
}

/// A node's snapshots and log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SnapshotReport {
    /// The latest snapshot's last index (0: none).
    pub index: Index,
    /// Its term.
    pub term: Term,
    /// Its size in bytes.
    pub bytes: u64,
    /// Milliseconds since it was taken or installed (since the start, for one the node
    /// recovered from its disk).
    pub age_ms: u64,
    /// The index of a snapshot of this node's state being taken.
    pub taking: Option<Index>,
    /// A snapshot being received from the leader.
    pub receiving: Option<SnapshotSending>,
    /// The first index the log holds.
    pub first_index: Index,
    /// Log entries held in memory.
    pub log_entries_in_memory: u64,
    /// Bytes of those entries.
    pub log_bytes_in_memory: u64,
    /// Snapshots of this node's state taken since start.
    pub taken: u64,
    /// Snapshots this node sent to followers that installed them, since start.
    pub sent: u64,
    /// Snapshots received from a leader and installed, since start.
    pub installed: u64,
}

/// A peer with an empty address and no snapshot: id, address length, matched, next,
/// replicating, in flight, active, connected, snapshot tag.
const PEER_MIN_BYTES: usize = 8 + 4 + 8 + 8 + 1 + 4 + 1 + 1 + 1;
const SENDING_BYTES: usize = 3 * 8;

/// The fields before the first peer, with no leader known: id, cluster id, role, term, vote,
/// leader tag, commit, applied, last index, persisted, peer count.
pub(super) const BEFORE_PEERS_BYTES: usize = 8 + 8 + 1 + 8 + 8 + 1 + 4 * 8 + 4;

/// A status without peers, with no leader known and no snapshot transfers: id, cluster id,
/// role, term, vote, leader tag, commit, applied, last index, persisted, peer count, the nine
/// counters and the snapshot report (four fields, two tags, four fields, three counters).
const STATUS_MIN_BYTES: usize = BEFORE_PEERS_BYTES + 9 * 8 + 4 * 8 + 2 + 6 * 8 + 1;

/// Exact size of a status's encoding.
pub(super) fn status_len(s: &NodeStatus) -> usize {
    let sending = |t: &Option<SnapshotSending>| t.map_or(0, |_| SENDING_BYTES);
    STATUS_MIN_BYTES
        + s.leader.map_or(0, |_| 8)
        + s.snapshot.taking.map_or(0, |_| 8)
        + membership_len(&s.membership)
        + s.transfer.map_or(0, |_| 8)
        + sending(&s.snapshot.receiving)
        + s.peers
            .iter()
            .map(|p| PEER_MIN_BYTES + p.address.len() + sending(&p.snapshot))
            .sum::<usize>()
}

fn put_sending(buf: &mut BytesMut, t: &Option<SnapshotSending>) {
    match t {
        None => buf.put_u8(0),
        Some(t) => {
            buf.put_u8(1);
            buf.put_u64_le(t.index);
            buf.put_u64_le(t.acked);
            buf.put_u64_le(t.total);
        }
    }
}

fn read_sending(
    r: &mut Reader,
    what: &'static str,
) -> Result<Option<SnapshotSending>, ProtocolError> {
    if !r.tag(what)? {
        return Ok(None);
    }
    Ok(Some(SnapshotSending {
        index: r.u64(what)?,
        acked: r.u64(what)?,
        total: r.u64(what)?,
    }))
}

pub(super) fn put_status(buf: &mut BytesMut, s: &NodeStatus) {
    buf.put_u64_le(s.id);
    buf.put_u64_le(s.cluster_id);
    buf.put_u8(role_byte(s.role));
    buf.put_u64_le(s.term);
    buf.put_u64_le(s.vote);
    put_opt_u64(buf, s.leader);
    buf.put_u64_le(s.commit);
    buf.put_u64_le(s.applied);
    buf.put_u64_le(s.last_index);
    buf.put_u64_le(s.persisted);
    put_len(buf, s.peers.len());
    for p in &s.peers {
        buf.put_u64_le(p.id);
        put_bytes(buf, p.address.as_bytes());
        buf.put_u64_le(p.matched);
        buf.put_u64_le(p.next);
        buf.put_u8(u8::from(p.replicating));
        buf.put_u32_le(p.inflight);
        buf.put_u8(u8::from(p.active));
        buf.put_u8(u8::from(p.connected));
        put_sending(buf, &p.snapshot);
    }
    for counter in [
        s.leader_changes,
        s.proposals,
        s.storage_batches,
        s.storage_writes,
        s.storage_entries,
        s.storage_micros,
        s.bytes_sent,
        s.bytes_received,
        s.uptime_ms,
    ] {
        buf.put_u64_le(counter);
    }
    let n = &s.snapshot;
    for v in [n.index, n.term, n.bytes, n.age_ms] {
        buf.put_u64_le(v);
    }
    put_opt_u64(buf, n.taking);
    put_sending(buf, &n.receiving);
    for v in [
        n.first_index,
        n.log_entries_in_memory,
        n.log_bytes_in_memory,
        n.taken,
        n.sent,
        n.installed,
    ] {
        buf.put_u64_le(v);
    }
    put_membership(buf, &s.membership);
    put_opt_u64(buf, s.transfer);
}

pub(super) fn read_status(r: &mut Reader) -> Result<NodeStatus, ProtocolError> {
    let id = r.u64("the node id")?;
    let cluster_id = r.u64("the status's cluster id")?;
    let role = role_from(r.u8("the role")?)?;
    let term = r.u64("the term")?;
    let vote = r.u64("the vote")?;
    let leader = r.opt_u64("the leader")?;
    let commit = r.u64("the commit index")?;
    let applied = r.u64("the applied index")?;
    let last_index = r.u64("the last index")?;
    let persisted = r.u64("the persisted index")?;
    let count = r.count("the peer count", MAX_PEERS)?;
    // Reserve no more than the remaining bytes can hold.
    let mut peers = Vec::with_capacity(count.min(r.remaining() / PEER_MIN_BYTES));
    for _ in 0..count {
        peers.push(PeerReport {
            id: r.u64("a peer's id")?,
            address: r.string("a peer's address")?,
            matched: r.u64("a peer's matched index")?,
            next: r.u64("a peer's next index")?,
            replicating: r.bool("a peer's replicating flag")?,
            inflight: r.u32("a peer's in-flight count")?,
            active: r.bool("a peer's active flag")?,
            connected: r.bool("a peer's connected flag")?,
            snapshot: read_sending(r, "a peer's snapshot transfer")?,
        });
    }
    Ok(NodeStatus {
        id,
        cluster_id,
        role,
        term,
        vote,
        leader,
        commit,
        applied,
        last_index,
        persisted,
        peers,
        leader_changes: r.u64("the leader change count")?,
        proposals: r.u64("the proposal count")?,
        storage_batches: r.u64("the storage batch count")?,
        storage_writes: r.u64("the storage write count")?,
        storage_entries: r.u64("the storage entry count")?,
        storage_micros: r.u64("the storage time")?,
        bytes_sent: r.u64("the bytes sent")?,
        bytes_received: r.u64("the bytes received")?,
        uptime_ms: r.u64("the uptime")?,
        snapshot: SnapshotReport {
            index: r.u64("the snapshot's index")?,
            term: r.u64("the snapshot's term")?,
            bytes: r.u64("the snapshot's size")?,
            age_ms: r.u64("the snapshot's age")?,
            taking: r.opt_u64("the snapshot being taken")?,
            receiving: read_sending(r, "the snapshot being received")?,
            first_index: r.u64("the log's first index")?,
            log_entries_in_memory: r.u64("the log entries in memory")?,
            log_bytes_in_memory: r.u64("the log bytes in memory")?,
            taken: r.u64("the snapshots taken")?,
            sent: r.u64("the snapshots sent")?,
            installed: r.u64("the snapshots installed")?,
        },
        membership: read_membership(r)?,
        transfer: r.opt_u64("the transfer's target")?,
    })
}
