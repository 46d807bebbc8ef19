//! Tests of the wire codec.
use super::*;
use proptest::collection::vec;
use proptest::prelude::*;

const CLUSTER: u64 = 0xC0FF_EE00_D15E_A5E5;

fn u64s() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0), Just(u64::MAX), 0..1000u64, any::<u64>()]
}

fn log_id() -> impl Strategy<Value = LogId> {
    (u64s(), u64s()).prop_map(|(term, index)| LogId { term, index })
}

fn append_entries() -> impl Strategy<Value = Message> {
    let entry = (u64s(), any::<bool>(), vec(any::<u8>(), 0..200));
    (u64s(), log_id(), u64s(), vec(entry, 0..8)).prop_map(|(term, mut prev, commit, raw)| {
        prev.index = prev.index.min(u64::MAX - raw.len() as u64);
        let entries = (1..)
            .zip(raw)
            .map(|(i, (term, noop, data))| Entry {
                term,
                index: prev.index + i,
                kind: if noop {
                    EntryKind::Noop
                } else {
                    EntryKind::Normal
                },
                data: Bytes::from(data),
            })
            .collect();
        Message::AppendEntries(AppendEntries {
            term,
            prev,
            entries,
            commit,
        })
    })
}

fn membership() -> impl Strategy<Value = crate::membership::Membership> {
    use crate::membership::{ChangeStep, Membership};
    (1..6u64, 0..3u64, any::<bool>(), vec(any::<u8>(), 0..40)).prop_map(
        |(voters, learners, joint, data)| {
            let mut m = Membership::with_voters(1..=voters);
            let added: Vec<ChangeStep> = (0..learners)
                .map(|k| ChangeStep::AddLearner {
                    id: 100 + k,
                    data: Bytes::from(data.clone()),
                })
                .collect();
            if !added.is_empty() {
                m = m.changed(&added).expect("learners");
            }
            if joint && learners >= 2 {
                m = m
                    .changed(&[
                        ChangeStep::Promote { id: 100 },
                        ChangeStep::Promote { id: 101 },
                    ])
                    .expect("joint");
            }
            m
        },
    )
}

fn install_snapshot() -> impl Strategy<Value = Message> {
    (
        u64s(),
        log_id(),
        membership(),
        u64s(),
        u64s(),
        vec(any::<u8>(), 0..100),
    )
        .prop_map(|(term, last, membership, size, offset, data)| {
            Message::InstallSnapshot(Box::new(InstallSnapshot {
                term,
                meta: SnapshotMeta {
                    last_index: last.index,
                    last_term: last.term,
                    membership: membership.into(),
                },
                size,
                offset,
                data: Bytes::from(data),
            }))
        })
}

fn message() -> impl Strategy<Value = Message> {
    let result = prop_oneof![
        u64s().prop_map(|match_index| AppendResult::Success { match_index }),
        (u64s(), log_id()).prop_map(|(rejected, hint)| AppendResult::Reject { rejected, hint }),
    ];
    prop_oneof![
        (u64s(), any::<bool>(), log_id(), any::<bool>()).prop_map(
            |(term, pre_vote, last_log, transfer)| {
                Message::RequestVote(RequestVote {
                    term,
                    pre_vote,
                    last_log,
                    transfer,
                })
            }
        ),
        (u64s(), any::<bool>(), any::<bool>()).prop_map(|(term, pre_vote, granted)| {
            Message::RequestVoteResponse(RequestVoteResponse {
                term,
                pre_vote,
                granted,
            })
        }),
        append_entries(),
        (u64s(), result).prop_map(|(term, result)| {
            Message::AppendEntriesResponse(AppendEntriesResponse { term, result })
        }),
        (u64s(), u64s()).prop_map(|(term, commit)| Message::Heartbeat(Heartbeat { term, commit })),
        u64s().prop_map(|term| Message::HeartbeatResponse(HeartbeatResponse { term })),
        u64s().prop_map(|term| Message::TimeoutNow(TimeoutNow { term })),
        install_snapshot(),
    ]
}

fn envelope() -> impl Strategy<Value = Envelope> {
    (u64s(), u64s(), u64s(), message()).prop_map(|(cluster_id, from, to, msg)| Envelope {
        cluster_id,
        from,
        to,
        msg,
    })
}

fn encode(msg: &Message) -> Bytes {
    Codec::new(CLUSTER).encode(1, 2, msg).unwrap()
}

fn decode(frame: Bytes) -> Result<Envelope, DecodeError> {
    Codec::new(CLUSTER).decode(frame)
}

/// A frame with a hand-made bincode header (a `Wire` with a forged entry list) and tail.
fn raw_frame(header: impl Encode, tail: &[u8]) -> Bytes {
    let mut buf = vec![PROTOCOL_VERSION];
    for word in [CLUSTER, 1, 2] {
        buf.extend_from_slice(&word.to_le_bytes());
    }
    bincode::encode_into_std_write(header, &mut buf, CONFIG).unwrap();
    buf.extend_from_slice(tail);
    Bytes::from(buf)
}

fn forged_append<E>(prev_index: u64, entries: E) -> Wire<E, MembershipOut, DataOut> {
    Wire::AppendEntries(1, (1, prev_index), 0, entries)
}

fn append(prev_index: u64, payloads: &[&'static [u8]]) -> Message {
    let entries = (prev_index + 1..)
        .zip(payloads)
        .map(|(index, p)| Entry {
            term: 3,
            index,
            kind: EntryKind::Normal,
            data: Bytes::from_static(p),
        })
        .collect();
    Message::AppendEntries(AppendEntries {
        term: 3,
        prev: LogId {
            term: 2,
            index: prev_index,
        },
        entries,
        commit: prev_index,
    })
}

proptest! {
    #[test]
    fn round_trip(env in envelope()) {
        let codec = Codec::new(env.cluster_id);
        let frame = codec.encode(env.from, env.to, &env.msg).unwrap();
        prop_assert_eq!(frame[0], PROTOCOL_VERSION);
        prop_assert_eq!(codec.decode(frame.clone()).unwrap(), env.clone());

        let mut chunks = vec![Bytes::from_static(b"before")];
        codec.encode_chunks(env.from, env.to, &env.msg, &mut chunks).unwrap();
        prop_assert_eq!(chunks[1..].concat(), frame.to_vec());

        let mut buf = b"prefix".to_vec();
        codec.encode_into(env.from, env.to, &env.msg, &mut buf).unwrap();
        prop_assert_eq!(&buf[..6], b"prefix");
        prop_assert_eq!(&buf[6..], &frame[..]);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        let _ = decode(Bytes::from(bytes));
    }

    #[test]
    fn arbitrary_header_never_panics(tail in vec(any::<u8>(), 0..512)) {
        let frame = raw_frame((), &tail);
        if let Ok(env) = decode(frame) {
            // Whatever decodes must encode and decode back to itself.
            prop_assert_eq!(decode(encode(&env.msg)).unwrap().msg, env.msg);
        }
    }

    #[test]
    fn every_truncation_is_an_error(msg in message()) {
        let frame = encode(&msg);
        for cut in 0..frame.len() {
            prop_assert!(decode(frame.slice(..cut)).is_err(), "cut at {}", cut);
        }
    }

    #[test]
    fn flipped_bytes_never_panic(
        msg in message(),
        flips in vec((any::<prop::sample::Index>(), 1..=255u8), 1..4),
    ) {
        let mut bytes = encode(&msg).to_vec();
        for (at, mask) in flips {
            let at = at.index(bytes.len());
            bytes[at] ^= mask;
        }
        let _ = decode(Bytes::from(bytes));
    }
}

#[test]
fn accessors_and_defaults() {
    let codec = Codec::new(7);
    assert_eq!(codec.cluster_id(), 7);
    assert_eq!(codec.max_frame_bytes(), DEFAULT_MAX_FRAME_BYTES);
    assert_eq!(codec.with_max_frame_bytes(100).max_frame_bytes(), 100);
}

#[test]
fn wrong_cluster_and_version() {
    let frame = encode(&append(0, &[b"x"]));
    assert_eq!(
        Codec::new(CLUSTER + 1).decode(frame.clone()),
        Err(DecodeError::WrongCluster {
            expected: CLUSTER + 1,
            found: CLUSTER
        })
    );
    let mut bytes = frame.to_vec();
    bytes[0] = 1;
    assert_eq!(
        decode(bytes.into()),
        Err(DecodeError::UnsupportedVersion(1)),
        "version 1 frames (before membership changes) are refused"
    );
    assert_eq!(decode(Bytes::new()), Err(DecodeError::Truncated));
    assert_eq!(decode(frame.slice(..20)), Err(DecodeError::Truncated));
    assert_eq!(
        decode(frame.slice(..FIXED_LEN + 1)),
        Err(DecodeError::Truncated)
    );
}

#[test]
fn oversized_frames_are_refused() {
    let msg = append(0, &[&[7; 100]]);
    let frame = encode(&msg);
    let small = Codec::new(CLUSTER).with_max_frame_bytes(64);
    let len = frame.len();
    assert_eq!(
        small.decode(frame.clone()),
        Err(DecodeError::FrameTooLarge { len, max: 64 })
    );
    let exact = Codec::new(CLUSTER).with_max_frame_bytes(len);
    assert_eq!(exact.decode(frame.clone()).unwrap().msg, msg);
    assert_eq!(exact.encode(1, 2, &msg).unwrap(), frame);

    // Refused before writing (payload alone too big) and after (header tips it over).
    let mut buf = b"keep".to_vec();
    let mut chunks = Vec::new();
    assert_eq!(
        small.encode_into(1, 2, &msg, &mut buf),
        Err(EncodeError::FrameTooLarge {
            len: FIXED_LEN + 100,
            max: 64
        })
    );
    let tight = Codec::new(CLUSTER).with_max_frame_bytes(len - 1);
    assert_eq!(
        tight.encode_into(1, 2, &msg, &mut buf),
        Err(EncodeError::FrameTooLarge { len, max: len - 1 })
    );
    assert!(tight.encode_chunks(1, 2, &msg, &mut chunks).is_err());
    assert!(tight.encode(1, 2, &msg).is_err());
    assert_eq!(buf, b"keep");
    assert!(chunks.is_empty());

    let err = EncodeError::FrameTooLarge {
        len: 20_000_000,
        max: DEFAULT_MAX_FRAME_BYTES,
    };
    assert_eq!(
        err.to_string(),
        "frame of 20000000 bytes exceeds the 16777216-byte limit"
    );
}

#[test]
fn payload_length_must_match_the_rest_of_the_frame() {
    let heartbeat = encode(&Message::Heartbeat(Heartbeat { term: 1, commit: 1 }));
    let extra = Bytes::from([&heartbeat[..], b"!"].concat());
    let mismatch = |declared, available| {
        Err(DecodeError::PayloadLengthMismatch {
            declared,
            available,
        })
    };
    assert_eq!(decode(extra), mismatch(0, 1));

    let frame = encode(&append(4, &[b"ab", b"", b"c"]));
    let extra = Bytes::from([&frame[..], b"!"].concat());
    assert_eq!(decode(extra), mismatch(3, 4));
    assert_eq!(decode(frame.slice(..frame.len() - 1)), mismatch(3, 2));

    let huge = forged_append(0, (1u64, (1u64, 1u64, 0u8, u64::MAX)));
    assert_eq!(decode(raw_frame(huge, b"abc")), mismatch(u64::MAX, 3));
    let two = (2u64, (1u64, 1u64, 0u8, u64::MAX), (1u64, 2u64, 0u8, 5u64));
    assert_eq!(
        decode(raw_frame(forged_append(0, two), b"")),
        mismatch(u64::MAX, 0)
    );
}

#[test]
fn unknown_entry_kind_is_reported() {
    let entries = (1u64, (1u64, 1u64, 7u8, 0u64));
    let frame = raw_frame(forged_append(0, entries), b"");
    assert_eq!(decode(frame), Err(DecodeError::UnknownEntryKind(7)));
    // The same frame with a known kind decodes: the test isolates the kind byte.
    let frame = raw_frame(forged_append(0, (1u64, (1u64, 1u64, 1u8, 0u64))), b"");
    assert!(decode(frame).is_ok());
}

#[test]
fn forged_headers_are_malformed() {
    for count in [u64::MAX, 1 << 40, 1000] {
        let frame = raw_frame(forged_append(0, count), b"");
        assert!(
            matches!(decode(frame), Err(DecodeError::Malformed(_))),
            "{count}"
        );
    }
    let frame = raw_frame(9u32, b"");
    assert!(matches!(decode(frame), Err(DecodeError::Malformed(_))));
    let bad_bool = raw_frame((1u32, 5u64, 2u8), b"");
    assert!(matches!(decode(bad_bool), Err(DecodeError::Malformed(_))));
}

#[test]
fn entry_indexes_must_be_consecutive() {
    fn gap(entries: impl Encode) -> Result<Envelope, DecodeError> {
        decode(raw_frame(forged_append(5, entries), b""))
    }
    let err = |position, found| {
        Err(DecodeError::EntryIndexGap {
            prev_index: 5,
            position,
            found,
        })
    };
    assert_eq!(
        gap((2u64, (1u64, 6u64, 0u8, 0u64), (1u64, 8u64, 0u8, 0u64))),
        err(1, 8)
    );
    assert_eq!(gap((1u64, (1u64, 5u64, 0u8, 0u64))), err(0, 5));
    assert!(gap((2u64, (1u64, 6u64, 0u8, 0u64), (1u64, 7u64, 1u8, 0u64))).is_ok());

    let overflow = raw_frame(
        forged_append(u64::MAX, (1u64, (1u64, 0u64, 0u8, 0u64))),
        b"",
    );
    assert_eq!(
        decode(overflow),
        Err(DecodeError::EntryIndexGap {
            prev_index: u64::MAX,
            position: 0,
            found: 0
        })
    );
}

#[test]
fn payloads_are_slices_of_the_frame() {
    let frame = encode(&append(0, &[b"hello", b"", b"world!"]));
    let range = frame.as_ptr_range();
    let Message::AppendEntries(m) = decode(frame.clone()).unwrap().msg else {
        panic!("not an AppendEntries");
    };
    assert_eq!(m.entries[0].data, &b"hello"[..]);
    assert_eq!(m.entries[2].data, &b"world!"[..]);
    for entry in m.entries.iter().filter(|e| !e.data.is_empty()) {
        let inner = entry.data.as_ptr_range();
        assert!(range.start <= inner.start && inner.end <= range.end);
    }
}
