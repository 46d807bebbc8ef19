//! Snapshots of a [`KvStore`] and the digest that compares replicas.
//!
//! # Layout
//!
//! ```text
//! magic     4 bytes   "RKVS"
//! version   u8        = SNAPSHOT_FORMAT_VERSION
//! state:
//!   last_applied   varint
//!   max_sessions   varint
//!   key count      varint, then per key by increasing key:  key bytes, value bytes
//!   session count  varint, then per session by increasing client id:
//!                  client_id varint (not 0), last_seq varint, last_index varint,
//!                  response (the response layout without its version byte)
//! checksum  u64 little endian: FNV-1a of every byte before it
//! ```
//!
//! [`KvStore::digest`] is the FNV-1a hash of the state part, computed without building it. The
//! encoding is canonical (shortest varints, sorted keys and clients), so equal stores have equal
//! snapshots and digests.
//!
//! Restoring checks magic, version and checksum, then every field: limits, orderings, session
//! indices. It never panics, and it allocates only for the parsed keys, values and sessions,
//! which are slices of the input.

use bytes::Bytes;

use crate::command::{read_key, read_value, CommandError};
use crate::response::Response;
use crate::session::{Session, Sessions};
use crate::store::KvStore;
use crate::wire::{Fnv64, Reader, Sink, WireError};

mod stream;
pub use stream::SnapshotWriter;

/// The four bytes that start every snapshot.
pub const SNAPSHOT_MAGIC: [u8; 4] = *b"RKVS";
/// The version byte that follows the magic.
pub const SNAPSHOT_FORMAT_VERSION: u8 = 1;

const HEADER_LEN: usize = SNAPSHOT_MAGIC.len() + 1;
const CHECKSUM_LEN: usize = 8;

/// Why a snapshot could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Shorter than the header and checksum alone.
    #[error("snapshot of {len} bytes is too short to be one")]
    TooShort {
        /// Length of the input.
        len: usize,
    },
    /// Does not start with [`SNAPSHOT_MAGIC`].
    #[error("not a snapshot: bad magic bytes")]
    BadMagic,
    /// The version byte is not one this build understands.
    #[error("unsupported snapshot version {0}")]
    UnsupportedVersion(u8),
    /// The checksum does not match the content: the snapshot is corrupt or truncated.
    #[error("checksum mismatch: stored {stored:#018x}, computed {computed:#018x}")]
    ChecksumMismatch {
        /// The checksum at the end of the snapshot.
        stored: u64,
        /// The checksum of the content.
        computed: u64,
    },
    /// The bytes are malformed below the level of fields.
    #[error("malformed snapshot: {0}")]
    Malformed(#[from] WireError),
    /// A key, value or cached response breaks a limit or is malformed.
    #[error("invalid field in snapshot: {0}")]
    InvalidField(CommandError),
    /// `max_sessions` does not fit this platform's `usize`.
    #[error("max_sessions {0} does not fit in memory on this platform")]
    MaxSessionsTooLarge(u64),
    /// Keys are not in strictly increasing order.
    #[error("keys out of order or repeated")]
    KeysOutOfOrder,
    /// Sessions are not in strictly increasing client order, or one has client id 0.
    #[error("session of client {client_id} out of order, repeated or reserved")]
    SessionOutOfOrder {
        /// The offending client id.
        client_id: u64,
    },
    /// A session's last index is 0, above the last applied index, or shared with another session.
    #[error("session of client {client_id} has impossible last index {index}")]
    SessionIndex {
        /// The session's client.
        client_id: u64,
        /// Its last index.
        index: u64,
    },
    /// More sessions than `max_sessions`.
    #[error("{count} sessions exceed the bound of {max}")]
    TooManySessions {
        /// Number of sessions in the snapshot.
        count: u64,
        /// The bound in the snapshot.
        max: usize,
    },
    /// Reading the snapshot's bytes failed ([`KvStore::restore_from`]).
    #[error("reading the snapshot failed: {0}")]
    Read(String),
}

impl From<CommandError> for SnapshotError {
    fn from(err: CommandError) -> Self {
        match err {
            CommandError::Wire(w) => SnapshotError::Malformed(w),
            other => SnapshotError::InvalidField(other),
        }
    }
}

impl KvStore {
    /// A snapshot of the whole state: the last applied index, the configuration, every key and
    /// value, every session; with a checksum. ([`KvStore::snapshot_writer`] writes the same
    /// bytes in chunks.)
    pub fn snapshot(&self) -> Bytes {
        let mut out = Vec::new();
        let mut w = SnapshotWriter::new(self);
        while w.write_chunk(&mut out, usize::MAX) {}
        Bytes::from(out)
    }

    /// A deterministic 64-bit digest of the whole state (the same content as a snapshot), to
    /// compare replicas. One pass over the state, linear in its size, without allocating.
    pub fn digest(&self) -> u64 {
        let mut h = Fnv64::new();
        self.write_state(&mut h);
        h.finish()
    }

    /// Rebuilds a store from [`KvStore::snapshot`]'s output, copying the input once.
    pub fn restore(snapshot: &[u8]) -> Result<KvStore, SnapshotError> {
        check_envelope(snapshot)?;
        let state = &snapshot[HEADER_LEN..snapshot.len() - CHECKSUM_LEN];
        read_state(&mut Reader::new(&Bytes::copy_from_slice(state)))
    }

    /// Like [`KvStore::restore`], without copying: keys and values are slices of `snapshot`
    /// and keep it alive.
    pub fn restore_bytes(snapshot: &Bytes) -> Result<KvStore, SnapshotError> {
        check_envelope(snapshot)?;
        let state = snapshot.slice(HEADER_LEN..snapshot.len() - CHECKSUM_LEN);
        read_state(&mut Reader::new(&state))
    }

    fn write_state(&self, out: &mut impl Sink) {
        self.write_head_fields(out);
        for (key, value) in &self.data {
            write_key_value(out, key, value);
        }
        out.put_varint(self.sessions.len() as u64);
        for (client_id, session) in self.sessions.iter() {
            write_session(out, client_id, session);
        }
    }

    /// The fields before the keys: last applied index, session bound, key count.
    fn write_head_fields(&self, out: &mut impl Sink) {
        out.put_varint(self.last_applied);
        out.put_varint(self.sessions.max() as u64);
        out.put_varint(self.data.len() as u64);
    }
}

fn write_key_value(out: &mut impl Sink, key: &[u8], value: &[u8]) {
    out.put_bytes(key);
    out.put_bytes(value);
}

fn write_session(out: &mut impl Sink, client_id: u64, session: &Session) {
    out.put_varint(client_id);
    out.put_varint(session.last_seq);
    out.put_varint(session.last_index);
    session.response.write_body(out);
}

/// Checks length, magic, version and checksum. Once it passes, the state part is
/// `snapshot[HEADER_LEN..len - CHECKSUM_LEN]`.
fn check_envelope(snapshot: &[u8]) -> Result<(), SnapshotError> {
    let len = snapshot.len();
    if len < HEADER_LEN + CHECKSUM_LEN {
        return Err(SnapshotError::TooShort { len });
    }
    let (content, tail) = snapshot.split_at(len - CHECKSUM_LEN);
    if content[..SNAPSHOT_MAGIC.len()] != SNAPSHOT_MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    let version = content[SNAPSHOT_MAGIC.len()];
    if version != SNAPSHOT_FORMAT_VERSION {
        return Err(SnapshotError::UnsupportedVersion(version));
    }
    let mut stored = [0u8; CHECKSUM_LEN];
    stored.copy_from_slice(tail);
    let stored = u64::from_le_bytes(stored);
    let computed = Fnv64::hash(content);
    if stored != computed {
        return Err(SnapshotError::ChecksumMismatch { stored, computed });
    }
    Ok(())
}

/// The fields after the header: an empty store with the recorded index and bound, and the
/// number of keys that follow.
fn read_header_fields(r: &mut Reader<'_>) -> Result<(KvStore, u64), SnapshotError> {
    let last_applied = r.varint()?;
    let max = r.varint()?;
    let max_sessions = usize::try_from(max).map_err(|_| SnapshotError::MaxSessionsTooLarge(max))?;
    let store = KvStore {
        last_applied,
        data: Default::default(),
        sessions: Sessions::new(max_sessions),
    };
    let key_count = r.varint()?;
    Ok((store, key_count))
}

fn read_key_value(r: &mut Reader<'_>) -> Result<(Bytes, Bytes), SnapshotError> {
    let key = read_key(r)?;
    let value = read_value(r)?;
    Ok((key, value))
}

fn read_session(r: &mut Reader<'_>) -> Result<(u64, Session), SnapshotError> {
    let client_id = r.varint()?;
    let last_seq = r.varint()?;
    let last_index = r.varint()?;
    let response = Response::read_body(r)?;
    let session = Session {
        last_seq,
        last_index,
        response,
    };
    Ok((client_id, session))
}

impl KvStore {
    /// Adds a key read from a snapshot; keys must come in strictly increasing order.
    fn insert_restored_key(&mut self, key: Bytes, value: Bytes) -> Result<(), SnapshotError> {
        if self
            .data
            .last_key_value()
            .is_some_and(|(last, _)| *last >= key)
        {
            return Err(SnapshotError::KeysOutOfOrder);
        }
        self.data.insert(key, value);
        Ok(())
    }

    fn check_session_count(&self, count: u64) -> Result<(), SnapshotError> {
        let max = self.sessions.max();
        if count > max as u64 {
            return Err(SnapshotError::TooManySessions { count, max });
        }
        Ok(())
    }

    /// Adds a session read from a snapshot, checking its order and index.
    fn insert_restored_session(
        &mut self,
        previous_client: &mut u64,
        client_id: u64,
        session: Session,
    ) -> Result<(), SnapshotError> {
        if client_id <= *previous_client {
            return Err(SnapshotError::SessionOutOfOrder { client_id });
        }
        *previous_client = client_id;
        let index = session.last_index;
        if index == 0 || index > self.last_applied {
            return Err(SnapshotError::SessionIndex { client_id, index });
        }
        if !self.sessions.insert_restored(client_id, session) {
            return Err(SnapshotError::SessionIndex { client_id, index });
        }
        Ok(())
    }
}

fn read_state(r: &mut Reader<'_>) -> Result<KvStore, SnapshotError> {
    let (mut store, key_count) = read_header_fields(r)?;
    for _ in 0..key_count {
        let (key, value) = read_key_value(r)?;
        store.insert_restored_key(key, value)?;
    }
    let session_count = r.varint()?;
    store.check_session_count(session_count)?;
    let mut previous_client = 0;
    for _ in 0..session_count {
        let (client_id, session) = read_session(r)?;
        store.insert_restored_session(&mut previous_client, client_id, session)?;
    }
    r.finish()?;
    Ok(store)
}

#[cfg(test)]
mod tests;
