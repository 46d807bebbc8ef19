//! Wire encoding of [`Message`]s. This is the only module that knows the byte layout, so the
//! encoding can be swapped without touching the rest of the core.
//!
//! # Frame layout
//!
//! ```text
//! offset  size  field
//! 0       1     version     = PROTOCOL_VERSION
//! 1       8     cluster_id  u64, little endian
//! 9       8     from        u64, little endian
//! 17      8     to          u64, little endian
//! 25      n     header      bincode 2, standard config (varint integers)
//! 25 + n  rest  payloads    the payloads of all entries, concatenated in entry order
//! ```
//!
//! The header mirrors [`Message`] field by field, except that a log entry is written as
//! `(term, index, kind byte, payload length)` and a snapshot chunk as its length: payload bytes
//! never pass through bincode. The payload lengths must add up to exactly the bytes that follow
//! the header. A frame carries no
//! length prefix of its own; delimiting frames is the transport's job (one frame per QUIC
//! stream, a length-delimited codec, ...).
//!
//! Decoding is zero copy for payloads: each decoded entry's data (and a snapshot chunk) is a
//! [`Bytes::slice`] of the frame. Decoding never panics on any input and never allocates more
//! than its vectors (entries, member ids), whose lengths are bounded by the frame size (every
//! element takes at least one header byte).

use bincode::de::read::Reader;
use bincode::de::{Decode, Decoder, DecoderImpl};
use bincode::enc::write::Writer;
use bincode::enc::{Encode, Encoder};
use bincode::error::{DecodeError as BincodeDecodeError, EncodeError as BincodeEncodeError};
use bytes::Bytes;

use crate::message::{
    AppendEntries, AppendEntriesResponse, AppendResult, Heartbeat, HeartbeatResponse,
    InstallSnapshot, InstallSnapshotResponse, Message, RequestVote, RequestVoteResponse,
    SnapshotAck, TimeoutNow,
};
use crate::types::{Entry, EntryKind, Index, LogId, NodeId, SnapshotMeta};

mod membership;

pub use membership::{
    decode_membership, encode_membership, MembershipDecodeError, MEMBERSHIP_FORMAT,
};

/// The version byte that starts every frame.
pub const PROTOCOL_VERSION: u8 = 2;

/// Default upper bound on the size of one frame, in bytes.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Size of the fixed part of a frame: version, cluster id, sender and receiver.
const FIXED_LEN: usize = 1 + 8 + 8 + 8;
/// Fewest header bytes an entry can take: four fields of at least one byte each.
const MIN_ENTRY_WIRE_BYTES: usize = 4;
/// Most header bytes a message takes besides its entries (variant tag, four varints, count).
const MAX_HEADER_BASE_BYTES: usize = 48;
/// Most header bytes an entry takes: three 9-byte varints and the kind byte.
const MAX_ENTRY_WIRE_BYTES: usize = 28;
/// The bincode configuration of the header. No bincode limit is set: the only container, the
/// entry list, is checked against the actual frame size at run time, which is stricter.
const CONFIG: bincode::config::Configuration = bincode::config::standard();

/// A message with its routing header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The cluster the message belongs to.
    pub cluster_id: u64,
    /// The sender.
    pub from: NodeId,
    /// The intended receiver.
    pub to: NodeId,
    /// The message itself.
    pub msg: Message,
}

/// Encodes and decodes frames for one cluster.
#[derive(Debug, Clone, Copy)]
pub struct Codec {
    cluster_id: u64,
    max_frame_bytes: usize,
}

/// Why a message could not be encoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EncodeError {
    /// The frame would exceed the configured maximum size.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    FrameTooLarge {
        /// Size the frame would have (saturated at `usize::MAX`).
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// bincode failed to encode the header.
    #[error("failed to encode the frame header: {0}")]
    Bincode(String),
}

/// Why a frame could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The frame exceeds the configured maximum size.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    FrameTooLarge {
        /// Size of the frame.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The frame ends before its header does.
    #[error("frame is truncated: it ends inside its header")]
    Truncated,
    /// The frame starts with a protocol version this node does not speak.
    #[error("unsupported protocol version {0} (this node speaks version {PROTOCOL_VERSION})")]
    UnsupportedVersion(u8),
    /// The frame belongs to another cluster.
    #[error("frame is for cluster {found:#x}, but this node belongs to cluster {expected:#x}")]
    WrongCluster {
        /// This node's cluster id.
        expected: u64,
        /// The cluster id in the frame.
        found: u64,
    },
    /// The header is not a valid encoding of a message.
    #[error("malformed frame header: {0}")]
    Malformed(String),
    /// An entry has a kind byte this node does not know.
    #[error("unknown log entry kind {0}")]
    UnknownEntryKind(u8),
    /// The payload lengths in the header do not add up to the bytes that follow it.
    #[error("entry payloads total {declared} bytes, but {available} bytes follow the header")]
    PayloadLengthMismatch {
        /// Sum of the declared payload lengths (saturated at `u64::MAX`).
        declared: u64,
        /// Bytes after the header.
        available: u64,
    },
    /// The membership in a snapshot's metadata cannot be decoded.
    #[error("bad membership in snapshot metadata: {0}")]
    BadMembership(MembershipDecodeError),
    /// The entries of an AppendEntries do not follow each other from `prev_index + 1`.
    #[error("entry {position} has index {found}, not consecutive after prev index {prev_index}")]
    EntryIndexGap {
        /// The `prev.index` of the AppendEntries.
        prev_index: Index,
        /// Position of the offending entry in the message (0-based).
        position: usize,
        /// The index that entry carries.
        found: Index,
    },
}

impl Codec {
    /// A codec for cluster `cluster_id` accepting frames up to [`DEFAULT_MAX_FRAME_BYTES`].
    pub fn new(cluster_id: u64) -> Self {
        Codec {
            cluster_id,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
        }
    }

    /// The same codec with another maximum frame size (applies to encoding and decoding).
    pub fn with_max_frame_bytes(self, max: usize) -> Self {
        Codec {
            max_frame_bytes: max,
            ..self
        }
    }

    /// The cluster id written into and required from every frame.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// The largest frame, in bytes, this codec encodes or accepts.
    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    /// Appends one frame to `buf` (payloads copied into it). On error `buf` is left unchanged.
    pub fn encode_into(
        &self,
        from: NodeId,
        to: NodeId,
        msg: &Message,
        buf: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        let payload = self.write_head(from, to, msg, buf)?;
        buf.reserve(payload);
        for data in payloads_of(msg) {
            buf.extend_from_slice(data);
        }
        Ok(())
    }

    /// Convenience: a fresh frame as [`Bytes`].
    pub fn encode(&self, from: NodeId, to: NodeId, msg: &Message) -> Result<Bytes, EncodeError> {
        let hint = head_capacity(msg).saturating_add(payload_len(msg));
        let mut buf = Vec::with_capacity(hint.min(self.max_frame_bytes));
        self.encode_into(from, to, msg, &mut buf)?;
        Ok(Bytes::from(buf))
    }

    /// Zero-copy variant for vectored writes (e.g. quinn `write_all_chunks`): pushes onto
    /// `chunks` the fixed header and bincode header as one chunk, followed by the non-empty
    /// entry payloads (reference-count clones, no copy). Concatenating the pushed chunks gives
    /// exactly the bytes of [`Codec::encode`]. On error `chunks` is left unchanged.
    pub fn encode_chunks(
        &self,
        from: NodeId,
        to: NodeId,
        msg: &Message,
        chunks: &mut Vec<Bytes>,
    ) -> Result<(), EncodeError> {
        let mut head = Vec::with_capacity(head_capacity(msg).min(self.max_frame_bytes));
        self.write_head(from, to, msg, &mut head)?;
        chunks.reserve(1 + entries_of(msg).len());
        chunks.push(Bytes::from(head));
        let payloads = payloads_of(msg).filter(|d| !d.is_empty());
        chunks.extend(payloads.cloned());
        Ok(())
    }

    /// Decodes one whole frame. Checks its size against the maximum, its version and its
    /// cluster id; the entry payloads of the result are slices of `frame`.
    pub fn decode(&self, frame: Bytes) -> Result<Envelope, DecodeError> {
        let len = frame.len();
        if len > self.max_frame_bytes {
            return Err(DecodeError::FrameTooLarge {
                len,
                max: self.max_frame_bytes,
            });
        }
        let (&version, rest) = frame.split_first().ok_or(DecodeError::Truncated)?;
        if version != PROTOCOL_VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let (cluster_id, rest) = rest.split_first_chunk().ok_or(DecodeError::Truncated)?;
        let cluster_id = u64::from_le_bytes(*cluster_id);
        if cluster_id != self.cluster_id {
            return Err(DecodeError::WrongCluster {
                expected: self.cluster_id,
                found: cluster_id,
            });
        }
        let (from, rest) = rest.split_first_chunk().ok_or(DecodeError::Truncated)?;
        let (to, header) = rest.split_first_chunk().ok_or(DecodeError::Truncated)?;
        let (from, to) = (u64::from_le_bytes(*from), u64::from_le_bytes(*to));

        let ctx = DecodeCtx {
            frame: &frame,
            declared: 0,
            failure: None,
        };
        let mut decoder = DecoderImpl::new(HeaderReader { rest: header }, CONFIG, ctx);
        let wire = WireIn::decode(&mut decoder);
        if let Some(failure) = decoder.context().failure.take() {
            return Err(failure);
        }
        let wire = wire.map_err(|e| match e {
            BincodeDecodeError::UnexpectedEnd { .. } => DecodeError::Truncated,
            other => DecodeError::Malformed(other.to_string()),
        })?;
        let declared = decoder.context().declared;
        let available = decoder.reader().rest.len();
        if declared != available as u64 {
            return Err(DecodeError::PayloadLengthMismatch {
                declared,
                available: available as u64,
            });
        }
        let payload_start = len - available;
        let msg = message_from_wire(wire, &frame, payload_start)?;
        Ok(Envelope {
            cluster_id,
            from,
            to,
            msg,
        })
    }

    /// Writes the fixed header and the bincode header to `buf` and returns the payload size.
    /// Refuses (leaving `buf` unchanged) a frame that would exceed the maximum size.
    fn write_head(
        &self,
        from: NodeId,
        to: NodeId,
        msg: &Message,
        buf: &mut Vec<u8>,
    ) -> Result<usize, EncodeError> {
        let max = self.max_frame_bytes;
        let payload = payload_len(msg);
        let at_least = FIXED_LEN.saturating_add(payload);
        if at_least > max {
            return Err(EncodeError::FrameTooLarge { len: at_least, max });
        }
        let start = buf.len();
        buf.push(PROTOCOL_VERSION);
        buf.extend_from_slice(&self.cluster_id.to_le_bytes());
        buf.extend_from_slice(&from.to_le_bytes());
        buf.extend_from_slice(&to.to_le_bytes());
        if let Err(e) = bincode::encode_into_std_write(wire_of(msg), buf, CONFIG) {
            buf.truncate(start);
            return Err(EncodeError::Bincode(e.to_string()));
        }
        let len = (buf.len() - start).saturating_add(payload);
        if len > max {
            buf.truncate(start);
            return Err(EncodeError::FrameTooLarge { len, max });
        }
        Ok(payload)
    }
}

/// The entries a message carries (none unless it is an AppendEntries).
fn entries_of(msg: &Message) -> &[Entry] {
    match msg {
        Message::AppendEntries(m) => &m.entries,
        _ => &[],
    }
}

/// The payloads that follow a message's header, in order: entry payloads, or a snapshot chunk.
fn payloads_of(msg: &Message) -> impl Iterator<Item = &Bytes> {
    let chunk = match msg {
        Message::InstallSnapshot(m) => Some(&m.data),
        _ => None,
    };
    entries_of(msg).iter().map(|e| &e.data).chain(chunk)
}

/// Total payload size of a message, saturated at `usize::MAX`.
fn payload_len(msg: &Message) -> usize {
    payloads_of(msg).fold(0usize, |sum, d| sum.saturating_add(d.len()))
}

/// Most header bytes a member id takes (a 9-byte varint is the worst case; 10 for safety).
const MAX_ID_WIRE_BYTES: usize = 10;

/// An upper bound on the size of the fixed and bincode headers of a message.
fn head_capacity(msg: &Message) -> usize {
    let table = match msg {
        Message::AppendEntries(m) => m.entries.len().saturating_mul(MAX_ENTRY_WIRE_BYTES),
        Message::InstallSnapshot(m) => {
            let b = &m.meta.membership;
            let data: usize = b.node_data().values().map(|d| d.len()).sum();
            (b.members().len() * 2)
                .saturating_mul(MAX_ID_WIRE_BYTES)
                .saturating_add(data)
                .saturating_add(8 * MAX_ID_WIRE_BYTES)
        }
        _ => 0,
    };
    (FIXED_LEN + MAX_HEADER_BASE_BYTES).saturating_add(table)
}

/// The bincode header: a mirror of [`Message`] with the fields of each variant in declaration
/// order, log ids as `(term, index)`, an entry list `E` written without payloads, member id
/// a membership `M` (a length and its record, see [`encode_membership`]) and a snapshot chunk
/// `D` written as its length.
#[derive(bincode::Encode, bincode::Decode)]
enum Wire<E, M, D> {
    /// term, pre_vote, last_log, transfer
    RequestVote(u64, bool, (u64, u64), bool),
    /// term, pre_vote, granted
    RequestVoteResponse(u64, bool, bool),
    /// term, prev, commit, entries
    AppendEntries(u64, (u64, u64), u64, E),
    /// term, result
    AppendEntriesResponse(u64, WireAppendResult),
    /// term, commit
    Heartbeat(u64, u64),
    /// term
    HeartbeatResponse(u64),
    /// term, last entry, membership, size, offset, chunk
    InstallSnapshot(u64, (u64, u64), M, u64, u64, D),
    /// term, snapshot's last entry, ack
    InstallSnapshotResponse(u64, (u64, u64), WireSnapshotAck),
    /// term
    TimeoutNow(u64),
}

/// Mirror of [`SnapshotAck`].
#[derive(bincode::Encode, bincode::Decode)]
enum WireSnapshotAck {
    /// next offset
    Received(u64),
    /// from
    Resend(u64),
}

/// Mirror of [`AppendResult`].
#[derive(bincode::Encode, bincode::Decode)]
enum WireAppendResult {
    /// match_index
    Success(u64),
    /// rejected, hint
    Reject(u64, (u64, u64)),
}

fn wire_id(id: LogId) -> (u64, u64) {
    (id.term, id.index)
}

fn log_id((term, index): (u64, u64)) -> LogId {
    LogId { term, index }
}

/// Encodes entries as a count followed by `(term, index, kind byte, payload length)` each.
struct EntriesOut<'a>(&'a [Entry]);

impl Encode for EntriesOut<'_> {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), BincodeEncodeError> {
        (self.0.len() as u64).encode(encoder)?;
        for entry in self.0 {
            entry.term.encode(encoder)?;
            entry.index.encode(encoder)?;
            entry.kind.to_byte().encode(encoder)?;
            (entry.data.len() as u64).encode(encoder)?;
        }
        Ok(())
    }
}

/// Encodes a membership as the length of its record followed by the record.
struct MembershipOut(Bytes);

impl Encode for MembershipOut {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), BincodeEncodeError> {
        (self.0.len() as u64).encode(encoder)?;
        encoder.writer().write(&self.0)
    }
}

/// Encodes a snapshot chunk as its length (the bytes follow the header).
struct DataOut(u64);

impl Encode for DataOut {
    fn encode<E: Encoder>(&self, encoder: &mut E) -> Result<(), BincodeEncodeError> {
        self.0.encode(encoder)
    }
}

type WireOut<'a> = Wire<EntriesOut<'a>, MembershipOut, DataOut>;
type WireIn = Wire<EntriesIn, MembershipIn, DataIn>;

fn wire_of(msg: &Message) -> WireOut<'_> {
    match msg {
        Message::RequestVote(m) => {
            Wire::RequestVote(m.term, m.pre_vote, wire_id(m.last_log), m.transfer)
        }
        Message::RequestVoteResponse(m) => Wire::RequestVoteResponse(m.term, m.pre_vote, m.granted),
        Message::AppendEntries(m) => {
            Wire::AppendEntries(m.term, wire_id(m.prev), m.commit, EntriesOut(&m.entries))
        }
        Message::AppendEntriesResponse(m) => Wire::AppendEntriesResponse(
            m.term,
            match m.result {
                AppendResult::Success { match_index } => WireAppendResult::Success(match_index),
                AppendResult::Reject { rejected, hint } => {
                    WireAppendResult::Reject(rejected, wire_id(hint))
                }
            },
        ),
        Message::Heartbeat(m) => Wire::Heartbeat(m.term, m.commit),
        Message::HeartbeatResponse(m) => Wire::HeartbeatResponse(m.term),
        Message::InstallSnapshot(m) => Wire::InstallSnapshot(
            m.term,
            wire_id(m.meta.last_id()),
            MembershipOut(encode_membership(&m.meta.membership)),
            m.size,
            m.offset,
            DataOut(m.data.len() as u64),
        ),
        Message::InstallSnapshotResponse(m) => Wire::InstallSnapshotResponse(
            m.term,
            wire_id(m.snapshot),
            match m.result {
                SnapshotAck::Received { next_offset } => WireSnapshotAck::Received(next_offset),
                SnapshotAck::Resend { from } => WireSnapshotAck::Resend(from),
            },
        ),
        Message::TimeoutNow(m) => Wire::TimeoutNow(m.term),
    }
}

/// Decoding state shared with [`EntriesIn::decode`].
struct DecodeCtx<'a> {
    /// The whole frame, to cut payload slices from.
    frame: &'a Bytes,
    /// Sum of the declared payload lengths, saturated at `u64::MAX` (never a valid total).
    declared: u64,
    /// A typed error found while decoding, reported in place of bincode's.
    failure: Option<DecodeError>,
}

/// Decoded entries. Until the end of the header is known, each entry's data is a placeholder
/// slice of the frame with the declared payload length; [`message_from_wire`] re-points it.
struct EntriesIn(Vec<Entry>);

impl<'a> Decode<DecodeCtx<'a>> for EntriesIn {
    fn decode<D: Decoder<Context = DecodeCtx<'a>>>(
        decoder: &mut D,
    ) -> Result<Self, BincodeDecodeError> {
        let count = u64::decode(decoder)?;
        let room = decoder.context().frame.len() / MIN_ENTRY_WIRE_BYTES;
        if count > room as u64 {
            return Err(BincodeDecodeError::Other(
                "more entries than the frame can hold",
            ));
        }
        // Grow as entries are actually decoded: a forged count must not reserve memory.
        let mut entries = Vec::with_capacity((count as usize).min(1024));
        for _ in 0..count {
            let term = u64::decode(decoder)?;
            let index = u64::decode(decoder)?;
            let kind = u8::decode(decoder)?;
            let len = u64::decode(decoder)?;
            let ctx = decoder.context();
            let Some(kind) = EntryKind::from_byte(kind) else {
                ctx.failure = Some(DecodeError::UnknownEntryKind(kind));
                return Err(BincodeDecodeError::Other("unknown entry kind"));
            };
            ctx.declared = ctx.declared.saturating_add(len);
            let data = match usize::try_from(len) {
                Ok(len) if len <= ctx.frame.len() => ctx.frame.slice(..len),
                // Cannot fit: the total check fails before this placeholder is used.
                _ => Bytes::new(),
            };
            entries.push(Entry {
                term,
                index,
                kind,
                data,
            });
        }
        Ok(EntriesIn(entries))
    }
}

/// A decoded membership; its record's length is checked against the frame size before
/// anything is reserved.
struct MembershipIn(crate::membership::Membership);

impl<'a> Decode<DecodeCtx<'a>> for MembershipIn {
    fn decode<D: Decoder<Context = DecodeCtx<'a>>>(
        decoder: &mut D,
    ) -> Result<Self, BincodeDecodeError> {
        let len = u64::decode(decoder)?;
        if len > decoder.context().frame.len() as u64 {
            return Err(BincodeDecodeError::Other(
                "a membership record longer than the frame",
            ));
        }
        let mut record = vec![0u8; len as usize];
        decoder.reader().read(&mut record)?;
        match decode_membership(&record) {
            Ok(m) => Ok(MembershipIn(m)),
            Err(e) => {
                decoder.context().failure = Some(DecodeError::BadMembership(e));
                Err(BincodeDecodeError::Other("bad membership record"))
            }
        }
    }
}

/// A decoded snapshot chunk's declared length (its bytes are cut from the frame later).
struct DataIn(u64);

impl<'a> Decode<DecodeCtx<'a>> for DataIn {
    fn decode<D: Decoder<Context = DecodeCtx<'a>>>(
        decoder: &mut D,
    ) -> Result<Self, BincodeDecodeError> {
        let len = u64::decode(decoder)?;
        let ctx = decoder.context();
        ctx.declared = ctx.declared.saturating_add(len);
        Ok(DataIn(len))
    }
}

/// A bincode reader over the header that tells how many bytes are left after decoding.
struct HeaderReader<'a> {
    rest: &'a [u8],
}

impl Reader for HeaderReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> Result<(), BincodeDecodeError> {
        let Some((head, rest)) = self.rest.split_at_checked(out.len()) else {
            return Err(BincodeDecodeError::UnexpectedEnd {
                additional: out.len() - self.rest.len(),
            });
        };
        out.copy_from_slice(head);
        self.rest = rest;
        Ok(())
    }

    fn peek_read(&mut self, n: usize) -> Option<&[u8]> {
        self.rest.get(..n)
    }

    fn consume(&mut self, n: usize) {
        self.rest = self.rest.get(n..).unwrap_or_default();
    }
}

/// Builds the message from its decoded header; payloads are cut from `frame` at `payload_start`.
/// The caller has checked that the declared payload lengths add up to the rest of the frame.
fn message_from_wire(
    wire: WireIn,
    frame: &Bytes,
    payload_start: usize,
) -> Result<Message, DecodeError> {
    Ok(match wire {
        Wire::RequestVote(term, pre_vote, last, transfer) => Message::RequestVote(RequestVote {
            term,
            pre_vote,
            last_log: log_id(last),
            transfer,
        }),
        Wire::RequestVoteResponse(term, pre_vote, granted) => {
            Message::RequestVoteResponse(RequestVoteResponse {
                term,
                pre_vote,
                granted,
            })
        }
        Wire::AppendEntries(term, prev, commit, EntriesIn(mut entries)) => {
            let prev = log_id(prev);
            let mut expected = prev.index;
            let mut at = payload_start;
            for (position, entry) in entries.iter_mut().enumerate() {
                match expected.checked_add(1) {
                    Some(next) if next == entry.index => expected = next,
                    _ => {
                        return Err(DecodeError::EntryIndexGap {
                            prev_index: prev.index,
                            position,
                            found: entry.index,
                        })
                    }
                }
                let end = at
                    .checked_add(entry.data.len())
                    .filter(|&end| end <= frame.len())
                    .ok_or_else(|| DecodeError::Malformed("payload out of bounds".into()))?;
                entry.data = frame.slice(at..end);
                at = end;
            }
            Message::AppendEntries(AppendEntries {
                term,
                prev,
                entries,
                commit,
            })
        }
        Wire::AppendEntriesResponse(term, result) => {
            let result = match result {
                WireAppendResult::Success(match_index) => AppendResult::Success { match_index },
                WireAppendResult::Reject(rejected, hint) => AppendResult::Reject {
                    rejected,
                    hint: log_id(hint),
                },
            };
            Message::AppendEntriesResponse(AppendEntriesResponse { term, result })
        }
        Wire::Heartbeat(term, commit) => Message::Heartbeat(Heartbeat { term, commit }),
        Wire::HeartbeatResponse(term) => Message::HeartbeatResponse(HeartbeatResponse { term }),
        Wire::InstallSnapshot(term, last, MembershipIn(membership), size, offset, DataIn(len)) => {
            // The caller checked that the declared length is exactly what follows the header.
            let end = usize::try_from(len)
                .ok()
                .and_then(|len| payload_start.checked_add(len))
                .filter(|&end| end <= frame.len())
                .ok_or_else(|| DecodeError::Malformed("payload out of bounds".into()))?;
            let last = log_id(last);
            Message::InstallSnapshot(Box::new(InstallSnapshot {
                term,
                meta: SnapshotMeta {
                    last_index: last.index,
                    last_term: last.term,
                    membership: membership.into(),
                },
                size,
                offset,
                data: frame.slice(payload_start..end),
            }))
        }
        Wire::InstallSnapshotResponse(term, snapshot, ack) => {
            Message::InstallSnapshotResponse(InstallSnapshotResponse {
                term,
                snapshot: log_id(snapshot),
                result: match ack {
                    WireSnapshotAck::Received(next_offset) => SnapshotAck::Received { next_offset },
                    WireSnapshotAck::Resend(from) => SnapshotAck::Resend { from },
                },
            })
        }
        Wire::TimeoutNow(term) => Message::TimeoutNow(TimeoutNow { term }),
    })
}

#[cfg(test)]
mod tests;
