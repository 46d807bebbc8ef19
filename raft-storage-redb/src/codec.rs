//! The byte layout of a stored log entry: a fixed header, then the payload as given.
//!
//! `term: u64 little-endian | kind: u8 | payload`. The index is the table key, so it is not
//! repeated. The payload is stored verbatim: no re-encoding on the way in or out.

use bytes::Bytes;
use raft_proto_core::{Entry, EntryKind, Index};

use crate::error::Inconsistency;

/// Bytes before the payload.
pub(crate) const ENTRY_HEADER: usize = 9;

fn kind_byte(kind: EntryKind) -> u8 {
    match kind {
        EntryKind::Normal => 0,
        EntryKind::Noop => 1,
    }
}

fn kind_of(byte: u8) -> Option<EntryKind> {
    match byte {
        0 => Some(EntryKind::Normal),
        1 => Some(EntryKind::Noop),
        _ => None,
    }
}

/// Writes `e`'s stored value into `buf` (cleared first).
pub(crate) fn encode_entry(e: &Entry, buf: &mut Vec<u8>) {
    buf.clear();
    buf.reserve(ENTRY_HEADER + e.data.len());
    buf.extend_from_slice(&e.term.to_le_bytes());
    buf.push(kind_byte(e.kind));
    buf.extend_from_slice(&e.data);
}

/// The term stored in an entry's value.
pub(crate) fn entry_term(index: Index, value: &[u8]) -> Result<u64, Inconsistency> {
    let head: [u8; 8] = value
        .get(..8)
        .and_then(|h| h.try_into().ok())
        .ok_or(Inconsistency::BadEntry { index })?;
    Ok(u64::from_le_bytes(head))
}

/// Rebuilds the entry stored at `index` from its value.
pub(crate) fn decode_entry(index: Index, value: &[u8]) -> Result<Entry, Inconsistency> {
    let term = entry_term(index, value)?;
    let kind = value
        .get(8)
        .copied()
        .and_then(kind_of)
        .ok_or(Inconsistency::BadEntry { index })?;
    Ok(Entry {
        term,
        index,
        kind,
        data: Bytes::copy_from_slice(&value[ENTRY_HEADER..]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_values() {
        let e = Entry {
            term: 7,
            index: 3,
            kind: EntryKind::Noop,
            data: Bytes::from_static(b"xyz"),
        };
        let mut buf = vec![1, 2, 3];
        encode_entry(&e, &mut buf);
        assert_eq!(buf.len(), ENTRY_HEADER + 3);
        assert_eq!(decode_entry(3, &buf), Ok(e));
        assert_eq!(entry_term(3, &buf), Ok(7));
        assert!(decode_entry(3, &buf[..8]).is_err());
        assert!(decode_entry(3, &[]).is_err());
        buf[8] = 9;
        assert_eq!(
            decode_entry(3, &buf),
            Err(Inconsistency::BadEntry { index: 3 })
        );
    }
}
