//! The byte form of a [`Membership`]: the payload of a configuration entry, and what snapshot
//! metadata carries on the wire and in storage. One encoding for all of them, so that an entry
//! written by one node decodes the same on every other.
//!
//! ```text
//! format   u8 = MEMBERSHIP_FORMAT
//! body     bincode 2, standard config: voters, outgoing, learners (each a list of u64),
//!          then the members' data as a list of (u64 id, byte string)
//! ```
//!
//! Decoding never panics, allocates at most what the record's own length allows, and checks the
//! result like any other membership ([`Membership::new`]).

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::membership::{InvalidMembership, Membership};

/// The format byte that starts every membership record.
pub const MEMBERSHIP_FORMAT: u8 = 1;

/// Largest membership record accepted (far above what [`crate::membership::MAX_MEMBERS`]
/// members with the largest data take).
const MAX_RECORD_BYTES: usize = 1 << 20;

const CONFIG: bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_RECORD_BYTES>,
> = bincode::config::standard().with_limit::<MAX_RECORD_BYTES>();

#[derive(bincode::Encode, bincode::Decode)]
struct Record {
    voters: Vec<u64>,
    outgoing: Vec<u64>,
    learners: Vec<u64>,
    data: Vec<(u64, Vec<u8>)>,
}

/// Why a membership record could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MembershipDecodeError {
    /// The record is empty.
    #[error("the membership record is empty")]
    Empty,
    /// The record starts with a format this node does not know.
    #[error("unknown membership record format {0}")]
    UnknownFormat(u8),
    /// The record is larger than any valid one.
    #[error("membership record of {0} bytes is too large")]
    TooLarge(usize),
    /// The body is not a valid encoding.
    #[error("malformed membership record")]
    Malformed,
    /// Bytes follow the record.
    #[error("{0} bytes follow the membership record")]
    TrailingBytes(usize),
    /// The decoded membership breaks an invariant.
    #[error("invalid membership: {0}")]
    Invalid(#[from] InvalidMembership),
}

/// Encodes a membership (the payload of a configuration entry).
pub fn encode_membership(m: &Membership) -> Bytes {
    let record = Record {
        voters: m.voters().to_vec(),
        outgoing: m.outgoing().to_vec(),
        learners: m.learners().to_vec(),
        data: m
            .node_data()
            .iter()
            .map(|(&id, d)| (id, d.to_vec()))
            .collect(),
    };
    let mut out = vec![MEMBERSHIP_FORMAT];
    // Only a record beyond the limit could fail, and a valid membership is far below it.
    if bincode::encode_into_std_write(&record, &mut out, CONFIG).is_err() {
        out.truncate(1);
    }
    Bytes::from(out)
}

/// Decodes a membership record, checking it.
pub fn decode_membership(bytes: &[u8]) -> Result<Membership, MembershipDecodeError> {
    let (&format, body) = bytes.split_first().ok_or(MembershipDecodeError::Empty)?;
    if format != MEMBERSHIP_FORMAT {
        return Err(MembershipDecodeError::UnknownFormat(format));
    }
    if bytes.len() > MAX_RECORD_BYTES {
        return Err(MembershipDecodeError::TooLarge(bytes.len()));
    }
    let (record, used): (Record, usize) =
        bincode::decode_from_slice(body, CONFIG).map_err(|_| MembershipDecodeError::Malformed)?;
    if used != body.len() {
        return Err(MembershipDecodeError::TrailingBytes(body.len() - used));
    }
    let mut data = BTreeMap::new();
    for (id, d) in record.data {
        if data.insert(id, Bytes::from(d)).is_some() {
            return Err(InvalidMembership::Duplicate(id).into());
        }
    }
    Ok(Membership::new(
        record.voters,
        record.outgoing,
        record.learners,
        data,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::ChangeStep;
    use proptest::prelude::*;

    fn sample() -> Membership {
        Membership::with_voters([1, 2, 3])
            .changed(&[ChangeStep::AddLearner {
                id: 9,
                data: Bytes::from_static(b"10.0.0.9:7000"),
            }])
            .expect("learner")
            .changed(&[ChangeStep::Promote { id: 9 }, ChangeStep::Remove { id: 1 }])
            .expect("joint")
    }

    #[test]
    fn round_trips() {
        let m = sample();
        assert!(m.is_joint());
        assert_eq!(decode_membership(&encode_membership(&m)), Ok(m));
        let empty = Membership::default();
        assert_eq!(decode_membership(&encode_membership(&empty)), Ok(empty));
    }

    #[test]
    fn bad_records_are_refused() {
        let enc = encode_membership(&sample());
        assert_eq!(decode_membership(&[]), Err(MembershipDecodeError::Empty));
        assert_eq!(
            decode_membership(&[7, 0, 0, 0, 0]),
            Err(MembershipDecodeError::UnknownFormat(7))
        );
        assert_eq!(
            decode_membership(&enc[..enc.len() - 1]),
            Err(MembershipDecodeError::Malformed)
        );
        let mut longer = enc.to_vec();
        longer.push(0);
        assert_eq!(
            decode_membership(&longer),
            Err(MembershipDecodeError::TrailingBytes(1))
        );
        // A learner that is also a voter.
        let forged = Record {
            voters: vec![1, 2],
            outgoing: vec![],
            learners: vec![2],
            data: vec![],
        };
        let mut bytes = vec![MEMBERSHIP_FORMAT];
        bincode::encode_into_std_write(&forged, &mut bytes, CONFIG).expect("encode");
        assert_eq!(
            decode_membership(&bytes),
            Err(MembershipDecodeError::Invalid(
                InvalidMembership::Duplicate(2)
            ))
        );
        // A forged list length must not allocate.
        let huge = [
            MEMBERSHIP_FORMAT,
            0xFD,
            0xFF,
            0xFF,
            0xFF,
            0xFF,
            0xFF,
            0xFF,
            0x0F,
            0,
        ];
        assert_eq!(
            decode_membership(&huge),
            Err(MembershipDecodeError::Malformed)
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut b = bytes;
            if let Some(first) = b.first_mut() {
                *first = MEMBERSHIP_FORMAT;
            }
            let _ = decode_membership(&b);
        }
    }
}
