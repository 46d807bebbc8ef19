//! The client protocol: what a client sends a node over QUIC and what it gets back.
//!
//! Each request travels on its own bidirectional QUIC stream as one length-prefixed frame (see
//! [`crate::frame`]); the answer comes back on the same stream. A frame starts with the protocol
//! version and the cluster id, so a client of another cluster is refused with a clear error.
//!
//! The encoding ([`encode_request`], [`decode_request`], [`encode_response`],
//! [`decode_response`]) is hand-written, little-endian, fixed-width and canonical: the body is
//! `[version u8][cluster id u64][kind u8][fields]`, and a decoder accepts exactly what the
//! encoder writes. Decoding never panics, checks every length against its limit and against the
//! bytes left before reserving anything, and slices byte payloads out of the frame without
//! copying.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use raft_proto_core::{Index, NodeId, Role, Term};

/// What a client asks a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientRequest {
    /// Propose a command to the replicated state machine. Answered once the command is applied
    /// (with the state machine's response), or with a redirect or a refusal.
    Propose {
        /// The state machine's command, opaque to the driver.
        command: Bytes,
    },
    /// Report this node's status.
    Status,
}

/// What a node answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientResponse {
    /// The command was committed and applied at `index`; `response` is what the state machine
    /// returned.
    Applied {
        /// The log index of the command.
        index: Index,
        /// The state machine's answer, opaque to the driver.
        response: Bytes,
    },
    /// This node is not the leader. Retry at the leader, if one is known.
    NotLeader {
        /// The leader this node knows of.
        leader: Option<NodeId>,
        /// The leader's client address, if known.
        leader_addr: Option<String>,
    },
    /// The command may or may not have been applied (leadership changed while it was pending).
    /// Retrying the same request (same client id and sequence) is safe.
    Unknown {
        /// Why the outcome is unknown.
        reason: String,
    },
    /// The node refused the request (too large, overloaded, shutting down); it was not applied.
    Rejected {
        /// Why.
        reason: String,
    },
    /// The node's status.
    Status(Box<NodeStatus>),
}

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
}

// ---------------------------------------------------------------------------------------------
// Encoding
//
// A frame body (the length prefix around it belongs to `crate::frame`) is
//
//     [version u8][cluster id u64][kind u8][fields of that kind]
//
// with every integer little-endian and fixed-width. Byte strings and text are a u32 length and
// that many bytes (text must be UTF-8); an `Option` is a tag byte, 0 (absent) or 1 (present,
// the value follows); a `bool` is one byte, 0 or 1; a `Role` is one byte (follower 0,
// pre-candidate 1, candidate 2, leader 3); the peer list is a u32 count and the peers in order.
// Fields follow the order of their declaration. Request and response kinds are disjoint, so a
// request read as a response (or the reverse) is refused as an unknown kind.
//
// The encoding is canonical: every value has exactly one encoding and the decoder accepts
// nothing else (no other tag or boolean values, no bytes after the message), so
// `encode(decode(frame)) == frame` for every accepted frame.
// ---------------------------------------------------------------------------------------------

/// Version of the client protocol, the first byte of every frame.
pub const PROTOCOL_VERSION: u8 = 1;

/// Largest client frame either side accepts (request or response): 4 MiB + 64 KiB.
pub const MAX_CLIENT_FRAME: usize = (4 << 20) + (64 << 10);

/// Longest text a frame may carry (a reason, a leader or peer address), in bytes.
pub const MAX_STRING: usize = 64 << 10;

/// Most peers a status may list.
pub const MAX_PEERS: usize = 1024;

/// Version, cluster id and kind.
const HEADER_BYTES: usize = 1 + 8 + 1;

/// A peer with an empty address: id, address length, matched, next, replicating, inflight,
/// active, connected.
const PEER_MIN_BYTES: usize = 8 + 4 + 8 + 8 + 1 + 4 + 1 + 1;

/// A status without peers and with no leader known: id, cluster id, role, term, vote, leader
/// tag, commit, applied, last index, persisted, peer count and the nine counters.
const STATUS_MIN_BYTES: usize = 8 + 8 + 1 + 8 + 8 + 1 + 4 * 8 + 4 + 9 * 8;

const KIND_PROPOSE: u8 = 0x01;
const KIND_STATUS_REQUEST: u8 = 0x02;
const KIND_APPLIED: u8 = 0x81;
const KIND_NOT_LEADER: u8 = 0x82;
const KIND_UNKNOWN: u8 = 0x83;
const KIND_REJECTED: u8 = 0x84;
const KIND_STATUS: u8 = 0x85;

/// Why a client frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The frame ends in the middle of a field.
    #[error("the frame ends early: {what} needs {needed} bytes but only {available} are left")]
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the frame.
        available: usize,
    },
    /// The frame was written by a different version of the protocol.
    #[error("protocol version {0} is not supported (this node speaks version {v})", v = PROTOCOL_VERSION)]
    UnsupportedVersion(u8),
    /// The frame was meant for another cluster.
    #[error("the frame is for cluster {found:#x}, but this is cluster {expected:#x}")]
    WrongCluster {
        /// The cluster of the reader.
        expected: u64,
        /// The cluster the frame names.
        found: u64,
    },
    /// The message kind is not one this side reads.
    #[error("unknown message kind {0:#04x}")]
    UnknownKind(u8),
    /// Bytes follow the end of the message.
    #[error("{0} unexpected bytes follow the end of the message")]
    TrailingBytes(usize),
    /// A frame, a length or a count is over its limit.
    #[error("{what} is {size}, more than the limit of {max}")]
    TooLarge {
        /// What is too large (the frame, a field's length, the peer count).
        what: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A text field is not valid UTF-8.
    #[error("{what} is not valid UTF-8")]
    InvalidUtf8 {
        /// The field.
        what: &'static str,
    },
    /// A role byte is not one of the four roles.
    #[error("unknown role {0}")]
    BadRole(u8),
    /// An optional field's tag is neither 0 (absent) nor 1 (present).
    #[error("{what} has presence tag {tag}, which is neither 0 (absent) nor 1 (present)")]
    BadOptionTag {
        /// The field.
        what: &'static str,
        /// The tag found.
        tag: u8,
    },
    /// A boolean field is neither 0 nor 1.
    #[error("{what} is {value}, which is neither 0 (false) nor 1 (true)")]
    BadBool {
        /// The field.
        what: &'static str,
        /// The byte found.
        value: u8,
    },
}

/// Encodes a request for the cluster `cluster_id`.
///
/// Encoding does not check limits: a command that makes the frame larger than
/// [`MAX_CLIENT_FRAME`] encodes, but every reader refuses the frame.
pub fn encode_request(cluster_id: u64, req: &ClientRequest) -> Bytes {
    match req {
        ClientRequest::Propose { command } => {
            let mut buf = header(cluster_id, KIND_PROPOSE, 4 + command.len());
            put_bytes(&mut buf, command);
            buf.freeze()
        }
        ClientRequest::Status => header(cluster_id, KIND_STATUS_REQUEST, 0).freeze(),
    }
}

/// Decodes a request frame body, which must be for the cluster `cluster_id`.
///
/// A proposal's command is a slice of `frame` (no copy). Never panics; never allocates more
/// than the frame's own size.
pub fn decode_request(cluster_id: u64, frame: Bytes) -> Result<ClientRequest, ProtocolError> {
    let (kind, mut r) = Reader::open(cluster_id, frame)?;
    let req = match kind {
        KIND_PROPOSE => ClientRequest::Propose {
            command: r.bytes("the command", MAX_CLIENT_FRAME)?,
        },
        KIND_STATUS_REQUEST => ClientRequest::Status,
        other => return Err(ProtocolError::UnknownKind(other)),
    };
    r.finish()?;
    Ok(req)
}

/// Encodes a response for the cluster `cluster_id`.
///
/// Encoding does not check limits: a response larger than [`MAX_CLIENT_FRAME`], or with text
/// longer than [`MAX_STRING`] or more than [`MAX_PEERS`] peers, encodes, but every reader
/// refuses the frame.
pub fn encode_response(cluster_id: u64, resp: &ClientResponse) -> Bytes {
    let mut buf = header(cluster_id, response_kind(resp), response_fields_len(resp));
    match resp {
        ClientResponse::Applied { index, response } => {
            buf.put_u64_le(*index);
            put_bytes(&mut buf, response);
        }
        ClientResponse::NotLeader {
            leader,
            leader_addr,
        } => {
            put_opt_u64(&mut buf, *leader);
            match leader_addr {
                None => buf.put_u8(0),
                Some(addr) => {
                    buf.put_u8(1);
                    put_bytes(&mut buf, addr.as_bytes());
                }
            }
        }
        ClientResponse::Unknown { reason } | ClientResponse::Rejected { reason } => {
            put_bytes(&mut buf, reason.as_bytes());
        }
        ClientResponse::Status(status) => put_status(&mut buf, status),
    }
    buf.freeze()
}

/// Decodes a response frame body, which must be for the cluster `cluster_id`.
///
/// An applied command's response is a slice of `frame` (no copy). Never panics; never
/// allocates more than the frame's own size.
pub fn decode_response(cluster_id: u64, frame: Bytes) -> Result<ClientResponse, ProtocolError> {
    let (kind, mut r) = Reader::open(cluster_id, frame)?;
    let resp = match kind {
        KIND_APPLIED => ClientResponse::Applied {
            index: r.u64("the applied index")?,
            response: r.bytes("the state machine's response", MAX_CLIENT_FRAME)?,
        },
        KIND_NOT_LEADER => ClientResponse::NotLeader {
            leader: r.opt_u64("the leader")?,
            leader_addr: if r.tag("the leader's address")? {
                Some(r.string("the leader's address")?)
            } else {
                None
            },
        },
        KIND_UNKNOWN => ClientResponse::Unknown {
            reason: r.string("the reason")?,
        },
        KIND_REJECTED => ClientResponse::Rejected {
            reason: r.string("the reason")?,
        },
        KIND_STATUS => ClientResponse::Status(Box::new(read_status(&mut r)?)),
        other => return Err(ProtocolError::UnknownKind(other)),
    };
    r.finish()?;
    Ok(resp)
}

fn response_kind(resp: &ClientResponse) -> u8 {
    match resp {
        ClientResponse::Applied { .. } => KIND_APPLIED,
        ClientResponse::NotLeader { .. } => KIND_NOT_LEADER,
        ClientResponse::Unknown { .. } => KIND_UNKNOWN,
        ClientResponse::Rejected { .. } => KIND_REJECTED,
        ClientResponse::Status(_) => KIND_STATUS,
    }
}

/// Exact size of a response's fields (after the header), so encoding allocates once.
fn response_fields_len(resp: &ClientResponse) -> usize {
    match resp {
        ClientResponse::Applied { response, .. } => 8 + 4 + response.len(),
        ClientResponse::NotLeader {
            leader,
            leader_addr,
        } => 1 + leader.map_or(0, |_| 8) + 1 + leader_addr.as_ref().map_or(0, |a| 4 + a.len()),
        ClientResponse::Unknown { reason } | ClientResponse::Rejected { reason } => {
            4 + reason.len()
        }
        ClientResponse::Status(s) => {
            STATUS_MIN_BYTES
                + s.leader.map_or(0, |_| 8)
                + s.peers
                    .iter()
                    .map(|p| PEER_MIN_BYTES + p.address.len())
                    .sum::<usize>()
        }
    }
}

fn header(cluster_id: u64, kind: u8, fields_len: usize) -> BytesMut {
    let mut buf = BytesMut::with_capacity(HEADER_BYTES + fields_len);
    buf.put_u8(PROTOCOL_VERSION);
    buf.put_u64_le(cluster_id);
    buf.put_u8(kind);
    buf
}

/// A length prefix. A length beyond `u32::MAX` (far over every limit) is written as
/// `u32::MAX`, so the frame is refused rather than misread.
fn put_len(buf: &mut BytesMut, len: usize) {
    buf.put_u32_le(u32::try_from(len).unwrap_or(u32::MAX));
}

fn put_bytes(buf: &mut BytesMut, data: &[u8]) {
    put_len(buf, data.len());
    buf.put_slice(data);
}

fn put_opt_u64(buf: &mut BytesMut, v: Option<u64>) {
    match v {
        None => buf.put_u8(0),
        Some(v) => {
            buf.put_u8(1);
            buf.put_u64_le(v);
        }
    }
}

fn role_byte(role: Role) -> u8 {
    match role {
        Role::Follower => 0,
        Role::PreCandidate => 1,
        Role::Candidate => 2,
        Role::Leader => 3,
    }
}

fn role_from(b: u8) -> Result<Role, ProtocolError> {
    Ok(match b {
        0 => Role::Follower,
        1 => Role::PreCandidate,
        2 => Role::Candidate,
        3 => Role::Leader,
        other => return Err(ProtocolError::BadRole(other)),
    })
}

fn put_status(buf: &mut BytesMut, s: &NodeStatus) {
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
}

fn read_status(r: &mut Reader) -> Result<NodeStatus, ProtocolError> {
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
    })
}

/// A cursor over a frame body. Every read checks the remaining length first.
struct Reader {
    buf: Bytes,
}

impl Reader {
    /// Checks the frame's size, version and cluster; returns the kind and the fields.
    fn open(cluster_id: u64, frame: Bytes) -> Result<(u8, Reader), ProtocolError> {
        if frame.len() > MAX_CLIENT_FRAME {
            return Err(ProtocolError::TooLarge {
                what: "the frame",
                size: frame.len(),
                max: MAX_CLIENT_FRAME,
            });
        }
        let mut r = Reader { buf: frame };
        let version = r.u8("the protocol version")?;
        if version != PROTOCOL_VERSION {
            return Err(ProtocolError::UnsupportedVersion(version));
        }
        let found = r.u64("the cluster id")?;
        if found != cluster_id {
            return Err(ProtocolError::WrongCluster {
                expected: cluster_id,
                found,
            });
        }
        let kind = r.u8("the message kind")?;
        Ok((kind, r))
    }

    fn finish(self) -> Result<(), ProtocolError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(ProtocolError::TrailingBytes(n)),
        }
    }

    fn remaining(&self) -> usize {
        self.buf.len()
    }

    fn need(&self, what: &'static str, needed: usize) -> Result<(), ProtocolError> {
        if self.buf.len() < needed {
            Err(ProtocolError::Truncated {
                what,
                needed,
                available: self.buf.len(),
            })
        } else {
            Ok(())
        }
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, ProtocolError> {
        self.need(what, 1)?;
        Ok(self.buf.get_u8())
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, ProtocolError> {
        self.need(what, 4)?;
        Ok(self.buf.get_u32_le())
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, ProtocolError> {
        self.need(what, 8)?;
        Ok(self.buf.get_u64_le())
    }

    fn bool(&mut self, what: &'static str) -> Result<bool, ProtocolError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(ProtocolError::BadBool { what, value }),
        }
    }

    /// An `Option`'s tag: whether the value is present.
    fn tag(&mut self, what: &'static str) -> Result<bool, ProtocolError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(ProtocolError::BadOptionTag { what, tag }),
        }
    }

    fn opt_u64(&mut self, what: &'static str) -> Result<Option<u64>, ProtocolError> {
        Ok(if self.tag(what)? {
            Some(self.u64(what)?)
        } else {
            None
        })
    }

    /// A u32 count or length, checked against `max`.
    fn count(&mut self, what: &'static str, max: usize) -> Result<usize, ProtocolError> {
        let n = usize::try_from(self.u32(what)?).unwrap_or(usize::MAX);
        if n > max {
            return Err(ProtocolError::TooLarge { what, size: n, max });
        }
        Ok(n)
    }

    /// A length-prefixed byte string of at most `max` bytes, sliced out of the frame.
    fn bytes(&mut self, what: &'static str, max: usize) -> Result<Bytes, ProtocolError> {
        let len = self.count(what, max)?;
        self.need(what, len)?;
        Ok(self.buf.split_to(len))
    }

    /// Length-prefixed UTF-8 text of at most [`MAX_STRING`] bytes.
    fn string(&mut self, what: &'static str) -> Result<String, ProtocolError> {
        let raw = self.bytes(what, MAX_STRING)?;
        std::str::from_utf8(&raw)
            .map(str::to_owned)
            .map_err(|_| ProtocolError::InvalidUtf8 { what })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    const CLUSTER: u64 = 0x5EED_0000_C1A5_7E12;

    fn peer(id: NodeId, address: &str, matched: Index) -> PeerReport {
        PeerReport {
            id,
            address: address.into(),
            matched,
            next: matched + 1,
            replicating: true,
            inflight: 3,
            active: true,
            connected: false,
        }
    }

    fn status(peers: Vec<PeerReport>) -> NodeStatus {
        NodeStatus {
            id: 1,
            cluster_id: CLUSTER,
            role: Role::Leader,
            term: 7,
            vote: 1,
            leader: Some(1),
            commit: 100,
            applied: 99,
            last_index: 101,
            persisted: 101,
            peers,
            leader_changes: 2,
            proposals: 1_000,
            storage_batches: 50,
            storage_writes: 60,
            storage_entries: 101,
            storage_micros: 123_456,
            bytes_sent: 1 << 20,
            bytes_received: 1 << 19,
            uptime_ms: 86_400_000,
        }
    }

    fn requests() -> Vec<ClientRequest> {
        vec![
            ClientRequest::Propose {
                command: Bytes::from_static(b"put k v"),
            },
            ClientRequest::Propose {
                command: Bytes::new(),
            },
            ClientRequest::Status,
        ]
    }

    fn responses() -> Vec<ClientResponse> {
        let mut follower = status(vec![]);
        follower.role = Role::Follower;
        follower.leader = None;
        follower.vote = 0;
        vec![
            ClientResponse::Applied {
                index: 42,
                response: Bytes::from_static(b"ok"),
            },
            ClientResponse::Applied {
                index: u64::MAX,
                response: Bytes::new(),
            },
            ClientResponse::NotLeader {
                leader: Some(3),
                leader_addr: Some("10.0.0.3:7001".into()),
            },
            ClientResponse::NotLeader {
                leader: Some(3),
                leader_addr: None,
            },
            ClientResponse::NotLeader {
                leader: None,
                leader_addr: None,
            },
            ClientResponse::Unknown {
                reason: "leadership changed while the command was pending".into(),
            },
            ClientResponse::Rejected {
                reason: "überlastet: 1024 proposals pending ✋".into(),
            },
            ClientResponse::Rejected {
                reason: String::new(),
            },
            ClientResponse::Status(Box::new(status(vec![
                peer(2, "node2.example:7000", 100),
                peer(3, "[::1]:7000", 57),
            ]))),
            ClientResponse::Status(Box::new(follower)),
        ]
    }

    /// Every valid frame the unit tests start from.
    fn frames() -> Vec<Bytes> {
        let mut all: Vec<Bytes> = requests()
            .iter()
            .map(|r| encode_request(CLUSTER, r))
            .collect();
        all.extend(responses().iter().map(|r| encode_response(CLUSTER, r)));
        all
    }

    /// Decodes `frame` both ways; whatever is accepted must re-encode to exactly `frame`.
    fn check_canonical(cluster_id: u64, frame: &Bytes) {
        if let Ok(req) = decode_request(cluster_id, frame.clone()) {
            assert_eq!(&encode_request(cluster_id, &req), frame, "{req:?}");
        }
        if let Ok(resp) = decode_response(cluster_id, frame.clone()) {
            assert_eq!(&encode_response(cluster_id, &resp), frame, "{resp:?}");
        }
    }

    fn decode_any(frame: &Bytes) -> Result<(), ProtocolError> {
        match decode_request(CLUSTER, frame.clone()) {
            Ok(_) => Ok(()),
            Err(ProtocolError::UnknownKind(_)) => decode_response(CLUSTER, frame.clone()).map(drop),
            Err(e) => Err(e),
        }
    }

    fn with_byte(frame: &Bytes, at: usize, value: u8) -> Bytes {
        let mut v = frame.to_vec();
        v[at] = value;
        Bytes::from(v)
    }

    #[test]
    fn every_variant_round_trips() {
        for req in requests() {
            let frame = encode_request(CLUSTER, &req);
            assert_eq!(frame[0], PROTOCOL_VERSION);
            assert_eq!(frame[1..9], CLUSTER.to_le_bytes());
            assert_eq!(decode_request(CLUSTER, frame).as_ref(), Ok(&req));
        }
        for resp in responses() {
            let frame = encode_response(CLUSTER, &resp);
            assert_eq!(
                frame.len(),
                HEADER_BYTES + response_fields_len(&resp),
                "size estimate for {resp:?}"
            );
            assert_eq!(decode_response(CLUSTER, frame).as_ref(), Ok(&resp));
        }
    }

    #[test]
    fn layout_is_little_endian_and_fixed() {
        let frame = encode_request(
            0x0102_0304_0506_0708,
            &ClientRequest::Propose {
                command: Bytes::from_static(b"ab"),
            },
        );
        let expected: &[&[u8]] = &[
            &[PROTOCOL_VERSION],
            &[8, 7, 6, 5, 4, 3, 2, 1],
            &[KIND_PROPOSE],
            &[2, 0, 0, 0],
            b"ab",
        ];
        assert_eq!(frame[..], expected.concat());
        let frame = encode_response(
            7,
            &ClientResponse::NotLeader {
                leader: Some(0x0203),
                leader_addr: None,
            },
        );
        let expected: &[&[u8]] = &[
            &[PROTOCOL_VERSION],
            &[7, 0, 0, 0, 0, 0, 0, 0],
            &[KIND_NOT_LEADER],
            &[1, 3, 2, 0, 0, 0, 0, 0, 0],
            &[0],
        ];
        assert_eq!(frame[..], expected.concat());
    }

    #[test]
    fn payloads_are_slices_of_the_frame() {
        let frame = encode_request(
            CLUSTER,
            &ClientRequest::Propose {
                command: Bytes::from(vec![9u8; 1000]),
            },
        );
        let range = frame.as_ptr_range();
        let Ok(ClientRequest::Propose { command }) = decode_request(CLUSTER, frame.clone()) else {
            panic!("not a proposal");
        };
        assert!(range.contains(&command.as_ptr()), "command was copied");

        let frame = encode_response(
            CLUSTER,
            &ClientResponse::Applied {
                index: 1,
                response: Bytes::from(vec![7u8; 1000]),
            },
        );
        let range = frame.as_ptr_range();
        let Ok(ClientResponse::Applied { response, .. }) = decode_response(CLUSTER, frame.clone())
        else {
            panic!("not applied");
        };
        assert!(range.contains(&response.as_ptr()), "response was copied");
    }

    #[test]
    fn every_truncation_is_an_error() {
        for frame in frames() {
            for len in 0..frame.len() {
                let cut = frame.slice(..len);
                for result in [
                    decode_request(CLUSTER, cut.clone()).map(drop),
                    decode_response(CLUSTER, cut.clone()).map(drop),
                ] {
                    match result {
                        Err(ProtocolError::Truncated { .. }) => {}
                        // The kind byte is present: the other side's decoder does not know it.
                        Err(ProtocolError::UnknownKind(_)) if len >= HEADER_BYTES => {}
                        other => panic!("{len} of {} bytes of {frame:?}: {other:?}", frame.len()),
                    }
                }
                assert!(decode_any(&cut).is_err());
            }
        }
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        for frame in frames() {
            let mut long = frame.to_vec();
            long.extend_from_slice(&[0, 0, 0]);
            assert_eq!(
                decode_any(&Bytes::from(long)),
                Err(ProtocolError::TrailingBytes(3))
            );
        }
    }

    #[test]
    fn wrong_version_is_refused() {
        for frame in frames() {
            for version in [0, 2, 0xFF] {
                assert_eq!(
                    decode_any(&with_byte(&frame, 0, version)),
                    Err(ProtocolError::UnsupportedVersion(version))
                );
            }
        }
        // Even a lone version byte says which version it is.
        assert_eq!(
            decode_request(CLUSTER, Bytes::from_static(&[2])),
            Err(ProtocolError::UnsupportedVersion(2))
        );
    }

    #[test]
    fn wrong_cluster_is_refused() {
        for frame in frames() {
            assert_eq!(
                decode_any(&with_byte(&frame, 1, !frame[1])),
                Err(ProtocolError::WrongCluster {
                    expected: CLUSTER,
                    found: CLUSTER ^ 0xFF,
                })
            );
        }
        let frame = encode_request(CLUSTER + 1, &ClientRequest::Status);
        let err = decode_request(CLUSTER, frame).unwrap_err();
        assert_eq!(
            err,
            ProtocolError::WrongCluster {
                expected: CLUSTER,
                found: CLUSTER + 1,
            }
        );
        assert!(err.to_string().contains("cluster"), "{err}");
    }

    #[test]
    fn unknown_kinds_are_refused() {
        for frame in requests().iter().map(|r| encode_request(CLUSTER, r)) {
            assert_eq!(
                decode_response(CLUSTER, frame.clone()),
                Err(ProtocolError::UnknownKind(frame[9]))
            );
        }
        for frame in responses().iter().map(|r| encode_response(CLUSTER, r)) {
            assert_eq!(
                decode_request(CLUSTER, frame.clone()),
                Err(ProtocolError::UnknownKind(frame[9]))
            );
        }
        let status = encode_request(CLUSTER, &ClientRequest::Status);
        for kind in [0, 3, 0x80, 0x86, 0xFF] {
            let frame = with_byte(&status, 9, kind);
            assert_eq!(
                decode_request(CLUSTER, frame.clone()),
                Err(ProtocolError::UnknownKind(kind))
            );
            assert_eq!(
                decode_response(CLUSTER, frame),
                Err(ProtocolError::UnknownKind(kind))
            );
        }
    }

    #[test]
    fn bad_option_tags_are_refused() {
        let frame = encode_response(
            CLUSTER,
            &ClientResponse::NotLeader {
                leader: None,
                leader_addr: None,
            },
        );
        for (at, what) in [(10, "the leader"), (11, "the leader's address")] {
            for tag in [2, 0xFF] {
                assert_eq!(
                    decode_response(CLUSTER, with_byte(&frame, at, tag)),
                    Err(ProtocolError::BadOptionTag { what, tag })
                );
            }
        }
        // The status's leader tag sits after id, cluster id, role, term and vote.
        let frame = encode_response(CLUSTER, &ClientResponse::Status(Box::new(status(vec![]))));
        let at = HEADER_BYTES + 8 + 8 + 1 + 8 + 8;
        assert_eq!(frame[at], 1);
        assert!(matches!(
            decode_response(CLUSTER, with_byte(&frame, at, 7)),
            Err(ProtocolError::BadOptionTag { tag: 7, .. })
        ));
    }

    #[test]
    fn bad_roles_and_booleans_are_refused() {
        let one_peer = status(vec![peer(2, "", 5)]);
        let frame = encode_response(CLUSTER, &ClientResponse::Status(Box::new(one_peer)));
        let role_at = HEADER_BYTES + 16;
        assert_eq!(frame[role_at], 3);
        for role in [4, 0xFF] {
            assert_eq!(
                decode_response(CLUSTER, with_byte(&frame, role_at, role)),
                Err(ProtocolError::BadRole(role))
            );
        }
        // The peer (after the fields before the counters, plus the leader's value): id, empty
        // address, matched, next, then `replicating`.
        let peer_at = HEADER_BYTES + STATUS_MIN_BYTES - 9 * 8 + 8;
        let replicating_at = peer_at + 8 + 4 + 8 + 8;
        assert_eq!(frame[replicating_at], 1);
        for (at, what) in [
            (replicating_at, "a peer's replicating flag"),
            (replicating_at + 5, "a peer's active flag"),
            (replicating_at + 6, "a peer's connected flag"),
        ] {
            assert_eq!(
                decode_response(CLUSTER, with_byte(&frame, at, 2)),
                Err(ProtocolError::BadBool { what, value: 2 })
            );
        }
    }

    #[test]
    fn invalid_utf8_is_refused() {
        let frame = encode_response(
            CLUSTER,
            &ClientResponse::Rejected {
                reason: "abc".into(),
            },
        );
        let bad = with_byte(&frame, HEADER_BYTES + 4 + 1, 0xC3);
        assert_eq!(
            decode_response(CLUSTER, bad),
            Err(ProtocolError::InvalidUtf8 { what: "the reason" })
        );
    }

    fn header_of(kind: u8) -> Vec<u8> {
        let mut v = vec![PROTOCOL_VERSION];
        v.extend_from_slice(&CLUSTER.to_le_bytes());
        v.push(kind);
        v
    }

    #[test]
    fn oversized_lengths_are_refused_before_reading() {
        // A command announcing 4 GiB in a tiny frame.
        let mut v = header_of(KIND_PROPOSE);
        v.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode_request(CLUSTER, Bytes::from(v)),
            Err(ProtocolError::TooLarge {
                what: "the command",
                size: u32::MAX as usize,
                max: MAX_CLIENT_FRAME,
            })
        );
        // Within the limit but beyond the frame: truncated, nothing reserved.
        let mut v = header_of(KIND_APPLIED);
        v.extend_from_slice(&5u64.to_le_bytes());
        v.extend_from_slice(&1000u32.to_le_bytes());
        v.extend_from_slice(b"short");
        assert!(matches!(
            decode_response(CLUSTER, Bytes::from(v)),
            Err(ProtocolError::Truncated {
                needed: 1000,
                available: 5,
                ..
            })
        ));
        // A reason one byte over the text limit.
        let mut v = header_of(KIND_UNKNOWN);
        v.extend_from_slice(&(MAX_STRING as u32 + 1).to_le_bytes());
        v.resize(v.len() + MAX_STRING + 1, b'x');
        assert_eq!(
            decode_response(CLUSTER, Bytes::from(v)),
            Err(ProtocolError::TooLarge {
                what: "the reason",
                size: MAX_STRING + 1,
                max: MAX_STRING,
            })
        );
        // Too many peers; and the largest count with no peers behind it.
        let frame = encode_response(CLUSTER, &ClientResponse::Status(Box::new(status(vec![]))));
        // Everything before the counters and the peer count, plus the leader's value.
        let count_at = HEADER_BYTES + STATUS_MIN_BYTES - 9 * 8 - 4 + 8;
        assert_eq!(frame[count_at..count_at + 4], [0, 0, 0, 0]);
        let mut v = frame.to_vec();
        v[count_at..count_at + 4].copy_from_slice(&(MAX_PEERS as u32 + 1).to_le_bytes());
        assert_eq!(
            decode_response(CLUSTER, Bytes::from(v.clone())),
            Err(ProtocolError::TooLarge {
                what: "the peer count",
                size: MAX_PEERS + 1,
                max: MAX_PEERS,
            })
        );
        v[count_at..count_at + 4].copy_from_slice(&(MAX_PEERS as u32).to_le_bytes());
        assert!(matches!(
            decode_response(CLUSTER, Bytes::from(v)),
            Err(ProtocolError::Truncated { .. })
        ));
        // A frame over the limit is refused whatever it holds.
        let mut v = header_of(KIND_PROPOSE);
        v.resize(MAX_CLIENT_FRAME + 1, 0);
        assert_eq!(
            decode_request(CLUSTER, Bytes::from(v)),
            Err(ProtocolError::TooLarge {
                what: "the frame",
                size: MAX_CLIENT_FRAME + 1,
                max: MAX_CLIENT_FRAME,
            })
        );
    }

    #[test]
    fn the_limits_themselves_are_accepted() {
        let command = Bytes::from(vec![1u8; MAX_CLIENT_FRAME - HEADER_BYTES - 4]);
        let req = ClientRequest::Propose { command };
        let frame = encode_request(CLUSTER, &req);
        assert_eq!(frame.len(), MAX_CLIENT_FRAME);
        assert_eq!(decode_request(CLUSTER, frame).as_ref(), Ok(&req));

        let addr = "a".repeat(MAX_STRING);
        let peers = (0..MAX_PEERS as u64).map(|i| peer(i, "p", i)).collect();
        for resp in [
            ClientResponse::NotLeader {
                leader: Some(1),
                leader_addr: Some(addr),
            },
            ClientResponse::Status(Box::new(status(peers))),
        ] {
            let frame = encode_response(CLUSTER, &resp);
            assert_eq!(decode_response(CLUSTER, frame).as_ref(), Ok(&resp));
        }
    }

    #[test]
    fn errors_read_as_plain_words() {
        let cases = [
            (
                decode_request(CLUSTER, Bytes::new()).unwrap_err(),
                "the frame ends early: the protocol version needs 1 bytes but only 0 are left",
            ),
            (
                ProtocolError::UnsupportedVersion(9),
                "protocol version 9 is not supported (this node speaks version 1)",
            ),
            (
                ProtocolError::WrongCluster {
                    expected: 0xAB,
                    found: 0xCD,
                },
                "the frame is for cluster 0xcd, but this is cluster 0xab",
            ),
            (
                ProtocolError::UnknownKind(0x42),
                "unknown message kind 0x42",
            ),
        ];
        for (err, text) in cases {
            assert_eq!(err.to_string(), text);
        }
    }

    // ---- property tests ------------------------------------------------------------------

    fn arb_u64() -> impl Strategy<Value = u64> {
        prop_oneof![0..8u64, any::<u64>()]
    }

    fn arb_bytes() -> impl Strategy<Value = Bytes> {
        vec(any::<u8>(), 0..48).prop_map(Bytes::from)
    }

    fn arb_text() -> impl Strategy<Value = String> {
        // Any characters, control and multi-byte ones included.
        "(?s).{0,24}"
    }

    fn arb_role() -> impl Strategy<Value = Role> {
        prop_oneof![
            Just(Role::Follower),
            Just(Role::PreCandidate),
            Just(Role::Candidate),
            Just(Role::Leader),
        ]
    }

    fn arb_peer() -> impl Strategy<Value = PeerReport> {
        (
            arb_u64(),
            arb_text(),
            arb_u64(),
            arb_u64(),
            any::<bool>(),
            any::<u32>(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(
                |(id, address, matched, next, replicating, inflight, active, connected)| {
                    PeerReport {
                        id,
                        address,
                        matched,
                        next,
                        replicating,
                        inflight,
                        active,
                        connected,
                    }
                },
            )
    }

    fn arb_status() -> impl Strategy<Value = NodeStatus> {
        let core = (
            arb_u64(),
            any::<u64>(),
            arb_role(),
            arb_u64(),
            arb_u64(),
            proptest::option::of(arb_u64()),
            (arb_u64(), arb_u64(), arb_u64(), arb_u64()),
        );
        let counters = vec(arb_u64(), 9);
        (core, vec(arb_peer(), 0..5), counters).prop_map(
            |(
                (
                    id,
                    cluster_id,
                    role,
                    term,
                    vote,
                    leader,
                    (commit, applied, last_index, persisted),
                ),
                peers,
                c,
            )| NodeStatus {
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
                leader_changes: c[0],
                proposals: c[1],
                storage_batches: c[2],
                storage_writes: c[3],
                storage_entries: c[4],
                storage_micros: c[5],
                bytes_sent: c[6],
                bytes_received: c[7],
                uptime_ms: c[8],
            },
        )
    }

    fn arb_request() -> impl Strategy<Value = ClientRequest> {
        prop_oneof![
            arb_bytes().prop_map(|command| ClientRequest::Propose { command }),
            Just(ClientRequest::Status),
        ]
    }

    fn arb_response() -> impl Strategy<Value = ClientResponse> {
        prop_oneof![
            (arb_u64(), arb_bytes())
                .prop_map(|(index, response)| ClientResponse::Applied { index, response }),
            (
                proptest::option::of(arb_u64()),
                proptest::option::of(arb_text())
            )
                .prop_map(|(leader, leader_addr)| ClientResponse::NotLeader {
                    leader,
                    leader_addr
                }),
            arb_text().prop_map(|reason| ClientResponse::Unknown { reason }),
            arb_text().prop_map(|reason| ClientResponse::Rejected { reason }),
            arb_status().prop_map(|s| ClientResponse::Status(Box::new(s))),
        ]
    }

    /// The kinds both decoders know, to steer random bodies past the kind check.
    const KINDS: [u8; 7] = [
        KIND_PROPOSE,
        KIND_STATUS_REQUEST,
        KIND_APPLIED,
        KIND_NOT_LEADER,
        KIND_UNKNOWN,
        KIND_REJECTED,
        KIND_STATUS,
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn requests_round_trip(cluster in any::<u64>(), req in arb_request()) {
            let frame = encode_request(cluster, &req);
            prop_assert_eq!(decode_request(cluster, frame.clone()), Ok(req));
            check_canonical(cluster, &frame);
        }

        #[test]
        fn responses_round_trip(cluster in any::<u64>(), resp in arb_response()) {
            let frame = encode_response(cluster, &resp);
            prop_assert_eq!(frame.len(), HEADER_BYTES + response_fields_len(&resp));
            prop_assert_eq!(decode_response(cluster, frame.clone()), Ok(resp));
            check_canonical(cluster, &frame);
            // Truncated anywhere, the frame is refused.
            for len in 0..frame.len() {
                prop_assert!(decode_response(cluster, frame.slice(..len)).is_err());
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in vec(any::<u8>(), 0..256)) {
            let frame = Bytes::from(data);
            let named = frame
                .get(1..9)
                .map_or(CLUSTER, |id| u64::from_le_bytes(id.try_into().unwrap()));
            check_canonical(named, &frame);
            check_canonical(CLUSTER, &frame);
        }

        #[test]
        fn random_bodies_never_panic(
            kind in proptest::sample::select(&KINDS[..]),
            body in vec(prop_oneof![3 => 0..4u8, 1 => any::<u8>()], 0..400),
        ) {
            let mut v = header_of(kind);
            v.extend_from_slice(&body);
            check_canonical(CLUSTER, &Bytes::from(v));
        }

        #[test]
        fn mutated_frames_never_panic(
            resp in arb_response(),
            at in any::<prop::sample::Index>(),
            value in any::<u8>(),
        ) {
            let frame = encode_response(CLUSTER, &resp);
            let mutated = with_byte(&frame, at.index(frame.len()), value);
            check_canonical(CLUSTER, &mutated);
        }
    }
}
