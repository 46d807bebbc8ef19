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

mod membership;
mod status;
use membership::{
    changes_len, membership_len, put_changes, put_membership, read_changes, read_membership,
};
pub use membership::{MemberChange, MemberReport, MemberRole, MembershipReport, MAX_CHANGE_STEPS};
#[cfg(test)]
use status::BEFORE_PEERS_BYTES;
use status::{put_status, read_status, status_len};
pub use status::{NodeStatus, PeerReport, SnapshotReport, SnapshotSending};

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
    /// Take a snapshot of the state machine now (and compact the log after it). Answered with
    /// [`ClientResponse::Snapshot`] once it is stored.
    Snapshot,
    /// Change the cluster's membership (at the leader): the steps apply together, through a
    /// joint configuration when more than one voter changes. Answered with
    /// [`ClientResponse::Membership`] once the change is committed (and, for a joint change,
    /// once the joint configuration is left).
    ChangeMembership {
        /// What to change.
        steps: Vec<MemberChange>,
    },
    /// Hand leadership over to voter `to` (or to the most caught-up voter). Answered with
    /// [`ClientResponse::Transferred`] once another node leads.
    TransferLeader {
        /// The voter to hand over to.
        to: Option<NodeId>,
    },
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
    /// The node's latest snapshot, after a [`ClientRequest::Snapshot`].
    Snapshot(SnapshotDone),
    /// The configuration after a [`ClientRequest::ChangeMembership`].
    Membership(MembershipReport),
    /// Leadership moved, after a [`ClientRequest::TransferLeader`].
    Transferred {
        /// The new leader.
        leader: NodeId,
        /// Its term.
        term: Term,
    },
}

/// The answer to [`ClientRequest::Snapshot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotDone {
    /// The last index the snapshot covers.
    pub index: Index,
    /// The term of that entry.
    pub term: Term,
    /// Size of its data in bytes.
    pub bytes: u64,
    /// Whether it was taken for this request (false: nothing was applied since the latest).
    pub new: bool,
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
pub const PROTOCOL_VERSION: u8 = 3;

/// Largest client frame either side accepts (request or response): 4 MiB + 64 KiB.
pub const MAX_CLIENT_FRAME: usize = (4 << 20) + (64 << 10);

/// Longest text a frame may carry (a reason, a leader or peer address), in bytes.
pub const MAX_STRING: usize = 64 << 10;

/// Most peers a status may list.
pub const MAX_PEERS: usize = 1024;

/// Version, cluster id and kind.
const HEADER_BYTES: usize = 1 + 8 + 1;

const KIND_PROPOSE: u8 = 0x01;
const KIND_STATUS_REQUEST: u8 = 0x02;
const KIND_SNAPSHOT_REQUEST: u8 = 0x03;
const KIND_CHANGE_MEMBERSHIP: u8 = 0x04;
const KIND_TRANSFER_LEADER: u8 = 0x05;
const KIND_APPLIED: u8 = 0x81;
const KIND_NOT_LEADER: u8 = 0x82;
const KIND_UNKNOWN: u8 = 0x83;
const KIND_REJECTED: u8 = 0x84;
const KIND_STATUS: u8 = 0x85;
const KIND_SNAPSHOT: u8 = 0x86;
const KIND_MEMBERSHIP: u8 = 0x87;
const KIND_TRANSFERRED: u8 = 0x88;

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
    /// A membership change step has an unknown kind.
    #[error("unknown membership change step {0}")]
    UnknownStep(u8),
    /// A member's role byte is not one of the four roles.
    #[error("unknown member role {0}")]
    BadMemberRole(u8),
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
        ClientRequest::Snapshot => header(cluster_id, KIND_SNAPSHOT_REQUEST, 0).freeze(),
        ClientRequest::ChangeMembership { steps } => {
            let mut buf = header(cluster_id, KIND_CHANGE_MEMBERSHIP, changes_len(steps));
            put_changes(&mut buf, steps);
            buf.freeze()
        }
        ClientRequest::TransferLeader { to } => {
            let mut buf = header(cluster_id, KIND_TRANSFER_LEADER, 1 + to.map_or(0, |_| 8));
            put_opt_u64(&mut buf, *to);
            buf.freeze()
        }
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
        KIND_SNAPSHOT_REQUEST => ClientRequest::Snapshot,
        KIND_CHANGE_MEMBERSHIP => ClientRequest::ChangeMembership {
            steps: read_changes(&mut r)?,
        },
        KIND_TRANSFER_LEADER => ClientRequest::TransferLeader {
            to: r.opt_u64("the transfer's target")?,
        },
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
        ClientResponse::Snapshot(done) => {
            buf.put_u64_le(done.index);
            buf.put_u64_le(done.term);
            buf.put_u64_le(done.bytes);
            buf.put_u8(u8::from(done.new));
        }
        ClientResponse::Membership(m) => put_membership(&mut buf, m),
        ClientResponse::Transferred { leader, term } => {
            buf.put_u64_le(*leader);
            buf.put_u64_le(*term);
        }
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
        KIND_SNAPSHOT => ClientResponse::Snapshot(SnapshotDone {
            index: r.u64("the snapshot's index")?,
            term: r.u64("the snapshot's term")?,
            bytes: r.u64("the snapshot's size")?,
            new: r.bool("the snapshot's new flag")?,
        }),
        KIND_MEMBERSHIP => ClientResponse::Membership(read_membership(&mut r)?),
        KIND_TRANSFERRED => ClientResponse::Transferred {
            leader: r.u64("the new leader")?,
            term: r.u64("the new leader's term")?,
        },
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
        ClientResponse::Snapshot(_) => KIND_SNAPSHOT,
        ClientResponse::Membership(_) => KIND_MEMBERSHIP,
        ClientResponse::Transferred { .. } => KIND_TRANSFERRED,
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
        ClientResponse::Status(s) => status_len(s),
        ClientResponse::Snapshot(_) => 3 * 8 + 1,
        ClientResponse::Membership(m) => membership_len(m),
        ClientResponse::Transferred { .. } => 2 * 8,
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
pub(super) fn put_len(buf: &mut BytesMut, len: usize) {
    buf.put_u32_le(u32::try_from(len).unwrap_or(u32::MAX));
}

pub(super) fn put_bytes(buf: &mut BytesMut, data: &[u8]) {
    put_len(buf, data.len());
    buf.put_slice(data);
}

pub(super) fn put_opt_u64(buf: &mut BytesMut, v: Option<u64>) {
    match v {
        None => buf.put_u8(0),
        Some(v) => {
            buf.put_u8(1);
            buf.put_u64_le(v);
        }
    }
}

pub(super) fn role_byte(role: Role) -> u8 {
    match role {
        Role::Follower => 0,
        Role::PreCandidate => 1,
        Role::Candidate => 2,
        Role::Leader => 3,
    }
}

pub(super) fn role_from(b: u8) -> Result<Role, ProtocolError> {
    Ok(match b {
        0 => Role::Follower,
        1 => Role::PreCandidate,
        2 => Role::Candidate,
        3 => Role::Leader,
        other => return Err(ProtocolError::BadRole(other)),
    })
}

/// A cursor over a frame body. Every read checks the remaining length first.
pub(super) struct Reader {
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

    pub(super) fn remaining(&self) -> usize {
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

    pub(super) fn u8(&mut self, what: &'static str) -> Result<u8, ProtocolError> {
        self.need(what, 1)?;
        Ok(self.buf.get_u8())
    }

    pub(super) fn u32(&mut self, what: &'static str) -> Result<u32, ProtocolError> {
        self.need(what, 4)?;
        Ok(self.buf.get_u32_le())
    }

    pub(super) fn u64(&mut self, what: &'static str) -> Result<u64, ProtocolError> {
        self.need(what, 8)?;
        Ok(self.buf.get_u64_le())
    }

    pub(super) fn bool(&mut self, what: &'static str) -> Result<bool, ProtocolError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(ProtocolError::BadBool { what, value }),
        }
    }

    /// An `Option`'s tag: whether the value is present.
    pub(super) fn tag(&mut self, what: &'static str) -> Result<bool, ProtocolError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(ProtocolError::BadOptionTag { what, tag }),
        }
    }

    pub(super) fn opt_u64(&mut self, what: &'static str) -> Result<Option<u64>, ProtocolError> {
        Ok(if self.tag(what)? {
            Some(self.u64(what)?)
        } else {
            None
        })
    }

    /// A u32 count or length, checked against `max`.
    pub(super) fn count(&mut self, what: &'static str, max: usize) -> Result<usize, ProtocolError> {
        let n = usize::try_from(self.u32(what)?).unwrap_or(usize::MAX);
        if n > max {
            return Err(ProtocolError::TooLarge { what, size: n, max });
        }
        Ok(n)
    }

    /// A length-prefixed byte string of at most `max` bytes, sliced out of the frame.
    pub(super) fn bytes(&mut self, what: &'static str, max: usize) -> Result<Bytes, ProtocolError> {
        let len = self.count(what, max)?;
        self.need(what, len)?;
        Ok(self.buf.split_to(len))
    }

    /// Length-prefixed UTF-8 text of at most [`MAX_STRING`] bytes.
    pub(super) fn string(&mut self, what: &'static str) -> Result<String, ProtocolError> {
        let raw = self.bytes(what, MAX_STRING)?;
        std::str::from_utf8(&raw)
            .map(str::to_owned)
            .map_err(|_| ProtocolError::InvalidUtf8 { what })
    }
}

#[cfg(test)]
mod tests;
