//! Reading and changing the log, the hard state and the snapshot.

use bytes::Bytes;
use raft_proto_core::{Entry, Index, PersistWrite};
use redb::{Durability, ReadableTable};

use super::{
    fail, open_ro, Db, Result, LOG, PIECE, SNAPSHOT, SNAPSHOT_DATA, SNAPSHOT_MEMBERSHIP, STATE,
};
use crate::codec::{decode_entry, encode_entry, entry_term};
use crate::error::{Inconsistency, RedbStorageError};
use crate::view::{Incoming, SnapshotRecord, View};

impl Db {
    /// The stored entries with indexes in `lo..hi`, which must lie inside the log.
    pub fn entries(&self, lo: Index, hi: Index) -> Result<Vec<Entry>> {
        let txn = self.read_txn()?;
        let op = "reading entries";
        let log = open_ro(self, &txn, LOG, "table raft_log")?;
        let mut out = Vec::with_capacity((hi - lo).min(1 << 16) as usize);
        let range = log.range(lo..hi).map_err(|e| self.err(op)(e.into()))?;
        let mut expected = lo;
        for item in range {
            let (k, v) = item.map_err(|e| self.err(op)(e.into()))?;
            let index = k.value();
            if index != expected {
                return Err(self.inconsistent(Inconsistency::MissingEntry {
                    expected,
                    found: Some(index),
                }));
            }
            out.push(decode_entry(index, v.value()).map_err(|e| self.inconsistent(e))?);
            expected += 1;
        }
        if expected != hi {
            return Err(self.inconsistent(Inconsistency::MissingEntry {
                expected,
                found: None,
            }));
        }
        Ok(out)
    }

    /// Applies `writes` in one durable transaction, checking each against `view` (updated).
    pub fn write(&mut self, view: &mut View, writes: &[PersistWrite]) -> Result<()> {
        self.transact(Durability::Immediate, |txn, path, buf| {
            let f = |e: redb::Error| fail(path, "writing entries", e);
            let reject = |source| RedbStorageError::Rejected {
                path: path.to_path_buf(),
                source,
            };
            let mut log = txn.open_table(LOG).map_err(|e| f(e.into()))?;
            let mut hard_state = None;
            for w in writes {
                if let Some(at) = w.truncate_from {
                    if let Some(from) = view.cut(at).map_err(reject)? {
                        log.retain_in(from.., |_, _| false)
                            .map_err(|e| f(e.into()))?;
                    }
                }
                for e in &w.entries {
                    view.push(e.index).map_err(reject)?;
                    encode_entry(e, buf);
                    log.insert(e.index, buf.as_slice())
                        .map_err(|e| f(e.into()))?;
                }
                if w.hard_state.is_some() {
                    hard_state = w.hard_state;
                }
            }
            drop(log);
            if let Some(hs) = hard_state {
                let mut state = txn.open_table(STATE).map_err(|e| f(e.into()))?;
                for (k, v) in [("term", hs.term), ("vote", hs.vote), ("commit", hs.commit)] {
                    state.insert(k, v).map_err(|e| f(e.into()))?;
                }
                view.hard_state = hs;
            }
            Ok(())
        })
    }

    /// Drops the entries up to `floor` and records it, durably.
    pub fn compact(&mut self, floor: Index) -> Result<()> {
        self.transact(Durability::Immediate, |txn, path, _| {
            let f = |e: redb::Error| fail(path, "compacting the log", e);
            let mut log = txn.open_table(LOG).map_err(|e| f(e.into()))?;
            log.retain_in(..=floor, |_, _| false)
                .map_err(|e| f(e.into()))?;
            let mut state = txn.open_table(STATE).map_err(|e| f(e.into()))?;
            state.insert("log_floor", floor).map_err(|e| f(e.into()))?;
            Ok(())
        })
    }

    /// Deletes snapshot data stored under ids from `id` on (left by unfinished transfers).
    pub fn clear_snapshot_data_from(&mut self, id: u64) -> Result<()> {
        self.transact(Durability::None, |txn, path, _| {
            let f = |e: redb::Error| fail(path, "clearing unfinished snapshot data", e);
            let mut data = txn.open_table(SNAPSHOT_DATA).map_err(|e| f(e.into()))?;
            data.retain_in((id, 0u64).., |_, _| false)
                .map_err(|e| f(e.into()))?;
            Ok(())
        })
    }

    /// Stores `chunk` at the end of the incoming snapshot's data, without a sync: the durable
    /// commit of [`Db::finish_snapshot`] makes it durable.
    pub fn append_snapshot_data(&mut self, incoming: &Incoming, chunk: &[u8]) -> Result<()> {
        self.transact(Durability::None, |txn, path, _| {
            let f = |e: redb::Error| fail(path, "writing snapshot data", e);
            let mut data = txn.open_table(SNAPSHOT_DATA).map_err(|e| f(e.into()))?;
            let mut offset = incoming.len;
            for piece in chunk.chunks(PIECE) {
                data.insert((incoming.id, offset), piece)
                    .map_err(|e| f(e.into()))?;
                offset += piece.len() as u64;
            }
            Ok(())
        })
    }

    /// Makes `incoming` the latest snapshot in one durable commit: drops the previous one's
    /// data and, unless the log holds the snapshot's last entry, the whole log.
    pub fn finish_snapshot(&mut self, view: &mut View, incoming: &Incoming) -> Result<()> {
        let old = view.snapshot;
        self.transact(Durability::Immediate, |txn, path, _| {
            let f = |e: redb::Error| fail(path, "installing the snapshot", e);
            let meta = &incoming.meta;
            let mut log = txn.open_table(LOG).map_err(|e| f(e.into()))?;
            let held = match log.get(meta.last_index).map_err(|e| f(e.into()))? {
                Some(v) => Some(entry_term(meta.last_index, v.value()).map_err(|source| {
                    RedbStorageError::Inconsistent {
                        path: path.to_path_buf(),
                        source,
                    }
                })?),
                None => None,
            };
            if held != Some(meta.last_term) {
                log.retain(|_, _| false).map_err(|e| f(e.into()))?;
                let mut state = txn.open_table(STATE).map_err(|e| f(e.into()))?;
                state
                    .insert("log_floor", meta.last_index)
                    .map_err(|e| f(e.into()))?;
                view.floor = meta.last_index;
                view.last = meta.last_index;
            }
            drop(log);
            let mut data = txn.open_table(SNAPSHOT_DATA).map_err(|e| f(e.into()))?;
            if let Some(old) = old {
                data.retain_in((old.id, 0u64)..(old.id + 1, 0u64), |_, _| false)
                    .map_err(|e| f(e.into()))?;
            }
            let mut snaps = txn.open_table(SNAPSHOT).map_err(|e| f(e.into()))?;
            let record = (incoming.id, meta.last_index, meta.last_term, incoming.len);
            snaps.insert("current", record).map_err(|e| f(e.into()))?;
            let mut members = txn
                .open_table(SNAPSHOT_MEMBERSHIP)
                .map_err(|e| f(e.into()))?;
            let encoded = crate::codec::encode_membership(&meta.membership);
            members
                .insert("record", &encoded[..])
                .map_err(|e| f(e.into()))?;
            members.remove("current").map_err(|e| f(e.into()))?;
            view.snapshot = Some(SnapshotRecord {
                id: incoming.id,
                last: meta.last_id(),
                len: incoming.len,
            });
            Ok(())
        })
    }

    /// Up to `max_len` bytes of `snap`'s data from `offset`.
    pub fn read_snapshot(
        &self,
        snap: &SnapshotRecord,
        offset: u64,
        max_len: usize,
    ) -> Result<Bytes> {
        let want = (snap.len.saturating_sub(offset)).min(max_len as u64) as usize;
        if want == 0 {
            return Ok(Bytes::new());
        }
        let txn = self.read_txn()?;
        let op = "reading snapshot data";
        let data = open_ro(self, &txn, SNAPSHOT_DATA, "table raft_snapshot_data")?;
        // The piece holding `offset` is the last one starting at or before it.
        let start = data
            .range((snap.id, 0u64)..=(snap.id, offset))
            .map_err(|e| self.err(op)(e.into()))?
            .next_back()
            .transpose()
            .map_err(|e| self.err(op)(e.into()))?
            .map_or(0, |(k, _)| k.value().1);
        let mut out = Vec::with_capacity(want);
        let mut at = start;
        for item in data
            .range((snap.id, start)..(snap.id + 1, 0u64))
            .map_err(|e| self.err(op)(e.into()))?
        {
            let (k, v) = item.map_err(|e| self.err(op)(e.into()))?;
            if k.value().1 != at {
                break;
            }
            let piece = v.value();
            at += piece.len() as u64;
            // Only the first piece starts before `offset`.
            let skip = usize::try_from(offset.saturating_sub(k.value().1)).unwrap_or(usize::MAX);
            let rest = piece.get(skip..).unwrap_or_default();
            let take = rest.len().min(want - out.len());
            out.extend_from_slice(&rest[..take]);
            if out.len() == want {
                return Ok(Bytes::from(out));
            }
        }
        Err(self.inconsistent(Inconsistency::SnapshotLength {
            recorded: snap.len,
            found: at,
        }))
    }
}
