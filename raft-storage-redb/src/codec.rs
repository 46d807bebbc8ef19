//! The byte layout of a stored log entry: a fixed header, then the payload as given.
//!
//! `term: u64 little-endian | kind: u8 | payload`. The index is the table key, so it is not
//! repeated. The payload is stored verbatim: no re-encoding on the way in or out.

use bytes::Bytes;
use raft_proto_core::{Entry, EntryKind, Index, Membership, NodeId};

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

/// Encodes a membership as three lists (voters, outgoing voters, learners), each a `u32`
/// little-endian count followed by `u64` little-endian ids.
pub(crate) fn encode_membership(m: &Membership) -> Vec<u8> {
    let lists = [&m.voters, &m.outgoing, &m.learners];
    let ids: usize = lists.iter().map(|l| l.len()).sum();
    let mut out = Vec::with_capacity(12 + 8 * ids);
    for list in lists {
        out.extend_from_slice(&(list.len() as u32).to_le_bytes());
        for id in list.iter() {
            out.extend_from_slice(&id.to_le_bytes());
        }
    }
    out
}

/// The inverse of [`encode_membership`]; `None` for anything else.
pub(crate) fn decode_membership(mut b: &[u8]) -> Option<Membership> {
    let mut list = || -> Option<Vec<NodeId>> {
        let (count, rest) = b.split_first_chunk::<4>()?;
        let count = u32::from_le_bytes(*count) as usize;
        let bytes = count.checked_mul(8)?;
        let (ids, rest) = rest.split_at_checked(bytes)?;
        b = rest;
        Some(
            ids.chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect(),
        )
    };
    let voters = list()?;
    let outgoing = list()?;
    let learners = list()?;
    b.is_empty().then_some(Membership {
        voters,
        outgoing,
        learners,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_round_trips_and_garbage_is_refused() {
        let m = Membership {
            voters: vec![1, 2, 3],
            outgoing: vec![],
            learners: vec![u64::MAX],
        };
        let enc = encode_membership(&m);
        assert_eq!(decode_membership(&enc), Some(m));
        assert_eq!(decode_membership(&enc[..enc.len() - 1]), None);
        let mut longer = enc.clone();
        longer.push(0);
        assert_eq!(decode_membership(&longer), None);
        assert_eq!(decode_membership(&[0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(decode_membership(&[]), None);
    }

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
