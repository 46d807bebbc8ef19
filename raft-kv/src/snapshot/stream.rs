//! Snapshots as streams: a writer that produces a store's snapshot in chunks of a chosen size,
//! and a reader that restores a store from any [`std::io::Read`], so that neither side needs
//! the whole snapshot in one buffer. Both speak exactly the format of [`KvStore::snapshot`].

use std::borrow::Borrow;
use std::io::Read;
use std::ops::Bound;

use bytes::Bytes;

use super::{
    read_header_fields, read_key_value, read_session, write_key_value, write_session,
    SnapshotError, CHECKSUM_LEN, HEADER_LEN,
};
use super::{SNAPSHOT_FORMAT_VERSION, SNAPSHOT_MAGIC};
use crate::store::KvStore;
use crate::wire::{Fnv64, Reader, Sink, WireError};

/// Largest record (one key and value, or one session) the reader accepts: far above what the
/// limits on keys, values and responses allow, so that a forged length fails fast.
const MAX_RECORD_BYTES: usize = 8 << 20;
/// Bytes asked of the source per read.
const READ_BYTES: usize = 64 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Header,
    Keys,
    Sessions,
    Checksum,
    Done,
}

/// Writes a store's snapshot chunk by chunk ([`KvStore::snapshot_writer`]). The store it
/// holds (`S`: an owned copy, or a reference) is the point in time the snapshot shows.
#[derive(Debug)]
pub struct SnapshotWriter<S: Borrow<KvStore>> {
    store: S,
    phase: Phase,
    /// The last key written: the next chunk resumes after it.
    after_key: Option<Bytes>,
    /// The last session written.
    after_client: Option<u64>,
    hasher: Fnv64,
}

impl<S: Borrow<KvStore>> SnapshotWriter<S> {
    pub(crate) fn new(store: S) -> Self {
        SnapshotWriter {
            store,
            phase: Phase::Header,
            after_key: None,
            after_client: None,
            hasher: Fnv64::new(),
        }
    }

    /// Appends the next part of the snapshot to `out`: whole records until about `max` bytes
    /// were added (at least one record). Returns false once the snapshot is complete (nothing
    /// more to write).
    pub fn write_chunk(&mut self, out: &mut Vec<u8>, max: usize) -> bool {
        let start = out.len();
        let budget = start.saturating_add(max.max(1));
        while out.len() < budget {
            let store = self.store.borrow();
            match self.phase {
                Phase::Header => {
                    out.put(&SNAPSHOT_MAGIC);
                    out.put_u8(SNAPSHOT_FORMAT_VERSION);
                    store.write_head_fields(out);
                    self.phase = Phase::Keys;
                }
                Phase::Keys => {
                    let from = match &self.after_key {
                        Some(k) => Bound::Excluded(k.clone()),
                        None => Bound::Unbounded,
                    };
                    let mut last = None;
                    for (key, value) in store.data.range((from, Bound::Unbounded)) {
                        write_key_value(out, key, value);
                        last = Some(key.clone());
                        if out.len() >= budget {
                            break;
                        }
                    }
                    match last {
                        Some(k) if out.len() >= budget => self.after_key = Some(k),
                        _ => {
                            out.put_varint(store.sessions.len() as u64);
                            self.phase = Phase::Sessions;
                        }
                    }
                }
                Phase::Sessions => {
                    let mut last = None;
                    let from = self.after_client.map_or(0, |c| c + 1);
                    for (client_id, session) in store.sessions.iter().skip_while(|(c, _)| *c < from)
                    {
                        write_session(out, client_id, session);
                        last = Some(client_id);
                        if out.len() >= budget {
                            break;
                        }
                    }
                    match last {
                        Some(c) if out.len() >= budget => self.after_client = Some(c),
                        _ => self.phase = Phase::Checksum,
                    }
                }
                Phase::Checksum => {
                    self.hasher.put(&out[start..]);
                    let sum = self.hasher.finish();
                    out.put(&sum.to_le_bytes());
                    self.phase = Phase::Done;
                    return false;
                }
                Phase::Done => return false,
            }
        }
        self.hasher.put(&out[start..]);
        self.phase != Phase::Done
    }
}

impl KvStore {
    /// A writer of this store's snapshot that owns a copy of the store (so the store may go
    /// on applying while the snapshot is written out). Copying clones the maps' nodes and the
    /// reference counts of keys and values, not the bytes.
    pub fn snapshot_writer(&self) -> SnapshotWriter<KvStore> {
        SnapshotWriter::new(self.clone())
    }

    /// Rebuilds a store from a snapshot read from `source` (the bytes of
    /// [`KvStore::snapshot`], in any number of reads), checking it exactly as
    /// [`KvStore::restore`] does. Reads ahead in pieces of 64 KiB; keys and values are slices
    /// of those pieces.
    pub fn restore_from(source: impl Read) -> Result<KvStore, SnapshotError> {
        let mut s = StreamSource::new(source);
        let head = s.record(|r| {
            let magic = r.take(SNAPSHOT_MAGIC.len() as u64)?;
            Ok((magic, r.u8()?))
        })?;
        if head.0[..] != SNAPSHOT_MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        if head.1 != SNAPSHOT_FORMAT_VERSION {
            return Err(SnapshotError::UnsupportedVersion(head.1));
        }
        let (mut store, key_count) = s.record(read_header_fields)?;
        for _ in 0..key_count {
            let (key, value) = s.record(read_key_value)?;
            store.insert_restored_key(key, value)?;
        }
        let session_count = s.record(|r| Ok(r.varint()?))?;
        store.check_session_count(session_count)?;
        let mut previous_client = 0;
        for _ in 0..session_count {
            let (client_id, session) = s.record(read_session)?;
            store.insert_restored_session(&mut previous_client, client_id, session)?;
        }
        let computed = s.hasher.finish();
        let stored = s.checksum()?;
        if stored != computed {
            return Err(SnapshotError::ChecksumMismatch { stored, computed });
        }
        Ok(store)
    }
}

/// Records parsed from a byte stream read ahead into buffers.
struct StreamSource<R: Read> {
    source: R,
    buf: Bytes,
    pos: usize,
    eof: bool,
    /// Read bytes, counted for [`SnapshotError::TooShort`].
    total: usize,
    /// Hash of every byte consumed by a record.
    hasher: Fnv64,
}

impl<R: Read> StreamSource<R> {
    fn new(source: R) -> Self {
        StreamSource {
            source,
            buf: Bytes::new(),
            pos: 0,
            eof: false,
            total: 0,
            hasher: Fnv64::new(),
        }
    }

    /// Reads more: the unread rest of the buffer and at least one more read, in a new buffer
    /// (values already parsed keep the old one alive). Returns false at the end of the source.
    fn refill(&mut self) -> Result<bool, SnapshotError> {
        if self.eof {
            return Ok(false);
        }
        let rest = &self.buf[self.pos..];
        let mut next = Vec::with_capacity(rest.len() + READ_BYTES);
        next.extend_from_slice(rest);
        let before = next.len();
        next.resize(before + READ_BYTES, 0);
        let n = loop {
            match self.source.read(&mut next[before..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(SnapshotError::Read(e.to_string())),
            }
        };
        next.truncate(before + n);
        self.total += n;
        self.eof = n == 0;
        self.buf = Bytes::from(next);
        self.pos = 0;
        Ok(n > 0)
    }

    /// Parses one record with `parse`, reading more while it is cut short.
    fn record<T>(
        &mut self,
        mut parse: impl FnMut(&mut Reader<'_>) -> Result<T, SnapshotError>,
    ) -> Result<T, SnapshotError> {
        loop {
            let rest = self.buf.slice(self.pos..);
            let mut r = Reader::new(&rest);
            match parse(&mut r) {
                Ok(v) => {
                    let used = r.position();
                    self.hasher.put(&rest[..used]);
                    self.pos += used;
                    return Ok(v);
                }
                Err(SnapshotError::Malformed(WireError::Truncated { .. }))
                    if rest.len() < MAX_RECORD_BYTES =>
                {
                    if !self.refill()? {
                        return Err(self.too_short());
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn too_short(&self) -> SnapshotError {
        if self.total < HEADER_LEN + CHECKSUM_LEN {
            SnapshotError::TooShort { len: self.total }
        } else {
            SnapshotError::Malformed(WireError::Truncated {
                needed: 1,
                remaining: 0,
            })
        }
    }

    /// The trailing checksum, which must end the source.
    fn checksum(&mut self) -> Result<u64, SnapshotError> {
        while self.buf.len() - self.pos < CHECKSUM_LEN {
            if !self.refill()? {
                return Err(self.too_short());
            }
        }
        let mut sum = [0u8; CHECKSUM_LEN];
        sum.copy_from_slice(&self.buf[self.pos..self.pos + CHECKSUM_LEN]);
        self.pos += CHECKSUM_LEN;
        if self.buf.len() > self.pos || self.refill()? {
            let trailing = self.buf.len() - self.pos;
            return Err(SnapshotError::Malformed(WireError::TrailingBytes(trailing)));
        }
        Ok(u64::from_le_bytes(sum))
    }
}
