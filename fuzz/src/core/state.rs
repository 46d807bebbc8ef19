//! The state machine each node applies to, and the encoding of its snapshots.

use bytes::Bytes;
use raft_proto_core::{Entry, EntryKind, Index};

use crate::Output;

/// Encodes a list of applied entries as a snapshot: per entry its index, term (both in
/// [`Output::num`]'s encoding), kind byte, payload length (same encoding) and payload.
pub fn encode_state(entries: &[Entry]) -> Bytes {
    let mut out = Output::default();
    for e in entries {
        out.num(e.index)
            .num(e.term)
            .u8(e.kind.to_byte())
            .num(e.data.len() as u64);
        out.0.extend_from_slice(&e.data);
    }
    Bytes::from(out.0)
}

/// The inverse of [`encode_state`]; `None` for bytes it does not produce (a forged snapshot).
pub fn decode_state(data: &Bytes) -> Option<Vec<Entry>> {
    struct Strict<'a>(&'a [u8]);
    impl Strict<'_> {
        fn u8(&mut self) -> Option<u8> {
            let (&b, rest) = self.0.split_first()?;
            self.0 = rest;
            Some(b)
        }
        fn num(&mut self) -> Option<u64> {
            let b = self.u8()?;
            if b < 0xF0 {
                return Some(u64::from(b));
            }
            let v = self.0.get(..8)?;
            self.0 = &self.0[8..];
            Some(u64::from_le_bytes(v.try_into().ok()?))
        }
    }
    let mut r = Strict(data);
    let mut out = Vec::new();
    while !r.0.is_empty() {
        let index = r.num()?;
        let term = r.num()?;
        let kind = EntryKind::from_byte(r.u8()?)?;
        let len = usize::try_from(r.num()?).ok()?;
        if len > r.0.len() {
            return None;
        }
        let start = data.len() - r.0.len();
        r.0 = &r.0[len..];
        out.push(Entry {
            term,
            index,
            kind,
            data: data.slice(start..start + len),
        });
    }
    Some(out)
}

/// A node's state machine: the entries it applied (after a restore, the snapshot's list) and
/// the last index handed to it (applied or restored).
#[derive(Debug, Default, Clone)]
pub(super) struct StateMachine {
    pub(super) applied: Index,
    pub(super) entries: Vec<Entry>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_encoding_round_trips() {
        let e = |index, term, data: &'static [u8]| Entry {
            term,
            index,
            kind: if data.is_empty() {
                EntryKind::Noop
            } else {
                EntryKind::Normal
            },
            data: Bytes::from_static(data),
        };
        let entries = vec![e(1, 1, b""), e(2, 1, b"ab"), e(300, u64::MAX, b"xyz")];
        let enc = encode_state(&entries);
        assert_eq!(decode_state(&enc).as_ref(), Some(&entries));
        assert_eq!(decode_state(&Bytes::new()), Some(vec![]));
        for cut in 1..enc.len() {
            assert_ne!(decode_state(&enc.slice(..cut)).as_ref(), Some(&entries));
        }
        assert_eq!(decode_state(&enc.slice(..enc.len() - 1)), None);
    }
}
