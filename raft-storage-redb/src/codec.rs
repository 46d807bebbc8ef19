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
    kind.to_byte()
}

fn kind_of(byte: u8) -> Option<EntryKind> {
    EntryKind::from_byte(byte)
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

/// Encodes a membership: the core's record (the payload of a configuration entry), stored
/// under the key `record`.
pub(crate) fn encode_membership(m: &Membership) -> Bytes {
    raft_proto_core::codec::encode_membership(m)
}

/// The inverse of [`encode_membership`]; `None` for anything else.
pub(crate) fn decode_membership(b: &[u8]) -> Option<Membership> {
    raft_proto_core::codec::decode_membership(b).ok()
}

/// Decodes the first layout of the snapshot membership record (key `current`, written before
/// members carried data): three lists (voters, outgoing voters, learners), each a `u32`
/// little-endian count followed by `u64` little-endian ids. `None` for anything else.
pub(crate) fn decode_membership_v1(mut b: &[u8]) -> Option<Membership> {
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
    if !b.is_empty() {
        return None;
    }
    Membership::new(voters, outgoing, learners, Default::default()).ok()
}

/// The first layout, for tests of reading old files.
#[cfg(test)]
pub(crate) fn encode_membership_v1(m: &Membership) -> Vec<u8> {
    let lists = [m.voters(), m.outgoing(), m.learners()];
    let mut out = Vec::new();
    for list in lists {
        out.extend_from_slice(&(list.len() as u32).to_le_bytes());
        for id in list.iter() {
            out.extend_from_slice(&id.to_le_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_round_trips_and_garbage_is_refused() {
        let m = Membership::new(
            vec![1, 2, 3],
            vec![],
            vec![u64::MAX],
            [(u64::MAX, Bytes::from_static(b"addr"))].into(),
        )
        .expect("valid");
        let enc = encode_membership(&m);
        assert_eq!(decode_membership(&enc), Some(m.clone()));
        assert_eq!(decode_membership(&enc[..enc.len() - 1]), None);
        let mut longer = enc.to_vec();
        longer.push(0);
        assert_eq!(decode_membership(&longer), None);
        assert_eq!(decode_membership(&[0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(decode_membership(&[]), None);
        // The first layout still reads (without data, which it never held).
        let old = Membership::new(vec![1, 2, 3], vec![], vec![u64::MAX], Default::default())
            .expect("valid");
        let v1 = encode_membership_v1(&old);
        assert_eq!(decode_membership_v1(&v1), Some(old));
        assert_eq!(decode_membership_v1(&v1[..v1.len() - 1]), None);
        assert_eq!(decode_membership_v1(&[]), None);
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
