use super::*;
use crate::{Command, KvConfig, Op, MAX_KEY_BYTES};

fn sample() -> KvStore {
    let mut s = KvStore::new(KvConfig { max_sessions: 3 });
    let cmds = [
        Command::new(1, 1, Op::put("a", "1")),
        Command::new(2, 1, Op::get("a")),
        Command::new(0, 0, Op::put("", "empty key")),
        Command::new(3, 4, Op::cas("c", None, Some(Bytes::from_static(b"3")))),
        Command::new(4, 1, Op::delete("a")),
        Command::new(2, 2, Op::put("b", "")),
    ];
    for (i, cmd) in cmds.iter().enumerate() {
        s.apply(i as u64 + 1, &cmd.encode().unwrap()).unwrap();
    }
    s.apply(7, b"not a command").unwrap();
    s.apply_noop(9).unwrap();
    s
}

/// Wraps `state` in a header and a valid checksum.
fn seal(state: &[u8]) -> Vec<u8> {
    let mut out = SNAPSHOT_MAGIC.to_vec();
    out.push(SNAPSHOT_FORMAT_VERSION);
    out.extend_from_slice(state);
    let sum = Fnv64::hash(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

#[test]
fn restore_gives_an_equal_store() {
    let s = sample();
    let snap = s.snapshot();
    let restored = KvStore::restore(&snap).unwrap();
    assert_eq!(restored, s);
    assert_eq!(restored.digest(), s.digest());
    assert_eq!(restored.snapshot(), snap);
    assert_eq!(KvStore::restore_bytes(&snap).unwrap(), s);
    assert_eq!(restored.config(), KvConfig { max_sessions: 3 });
    assert_eq!(restored.last_applied(), 9);
    let empty = KvStore::default();
    assert_eq!(KvStore::restore(&empty.snapshot()).unwrap(), empty);
}

#[test]
fn digest_is_the_hash_of_the_state_part() {
    let s = sample();
    let snap = s.snapshot();
    assert_eq!(
        s.digest(),
        Fnv64::hash(&snap[HEADER_LEN..snap.len() - CHECKSUM_LEN])
    );
    assert_ne!(s.digest(), KvStore::default().digest());
}

#[test]
fn envelope_errors_name_the_problem() {
    let snap = sample().snapshot().to_vec();
    assert_eq!(
        KvStore::restore(&snap[..12]),
        Err(SnapshotError::TooShort { len: 12 })
    );
    let mut bad = snap.clone();
    bad[0] = b'X';
    assert_eq!(KvStore::restore(&bad), Err(SnapshotError::BadMagic));
    let mut bad = snap.clone();
    bad[4] = 2;
    assert_eq!(
        KvStore::restore(&bad),
        Err(SnapshotError::UnsupportedVersion(2))
    );
    let mut bad = snap.clone();
    bad[HEADER_LEN] ^= 1;
    assert!(matches!(
        KvStore::restore(&bad),
        Err(SnapshotError::ChecksumMismatch { .. })
    ));
    // Truncation is caught by the checksum.
    assert!(matches!(
        KvStore::restore(&snap[..snap.len() - 1]),
        Err(SnapshotError::ChecksumMismatch { .. })
    ));
}

#[test]
fn every_single_byte_change_is_detected() {
    let snap = sample().snapshot().to_vec();
    for i in 0..snap.len() {
        for flip in [0x01, 0x80, 0xff] {
            let mut bad = snap.clone();
            bad[i] ^= flip;
            assert!(KvStore::restore(&bad).is_err(), "byte {i} ^ {flip:#x}");
        }
    }
}

/// State bytes built field by field.
fn state(fields: &[u64], tail: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for &f in fields {
        out.put_varint(f);
    }
    out.extend_from_slice(tail);
    out
}

#[test]
fn field_errors_behind_a_valid_checksum() {
    let restore = |state: Vec<u8>| KvStore::restore(&seal(&state));
    // last_applied 5, max 2, one key "a" = "1", no sessions: fine.
    assert!(restore(state(&[5, 2, 1], b"\x01a\x011\x00")).is_ok());
    // Keys out of order and repeated.
    assert_eq!(
        restore(state(&[5, 2, 2], b"\x01b\x00\x01a\x00\x00")),
        Err(SnapshotError::KeysOutOfOrder)
    );
    assert_eq!(
        restore(state(&[5, 2, 2], b"\x01a\x00\x01a\x00\x00")),
        Err(SnapshotError::KeysOutOfOrder)
    );
    // Key over the limit.
    let mut tail = Vec::new();
    tail.put_varint(MAX_KEY_BYTES as u64 + 1);
    assert!(matches!(
        restore(state(&[5, 2, 1], &tail)),
        Err(SnapshotError::InvalidField(
            CommandError::KeyTooLarge { .. }
        ))
    ));
    // A huge key count with nothing behind it.
    assert!(matches!(
        restore(state(&[5, 2, u64::MAX], b"")),
        Err(SnapshotError::Malformed(WireError::Truncated { .. }))
    ));
    // Sessions: (client, last_seq, last_index) then a SessionExpired body (tag 5).
    assert!(restore(state(&[5, 2, 0, 2, 1, 1, 3], b"\x05\x02\x01\x04\x05")).is_ok());
    assert_eq!(
        restore(state(&[5, 1, 0, 2, 1, 1, 3], b"\x05\x02\x01\x04\x05")),
        Err(SnapshotError::TooManySessions { count: 2, max: 1 })
    );
    assert_eq!(
        restore(state(&[5, 2, 0, 1, 0, 1, 3], b"\x05")),
        Err(SnapshotError::SessionOutOfOrder { client_id: 0 })
    );
    assert_eq!(
        restore(state(&[5, 2, 0, 2, 2, 1, 3], b"\x05\x01\x01\x04\x05")),
        Err(SnapshotError::SessionOutOfOrder { client_id: 1 })
    );
    assert_eq!(
        restore(state(&[5, 2, 0, 1, 1, 1, 6], b"\x05")),
        Err(SnapshotError::SessionIndex {
            client_id: 1,
            index: 6
        })
    );
    assert_eq!(
        restore(state(&[5, 2, 0, 1, 1, 1, 0], b"\x05")),
        Err(SnapshotError::SessionIndex {
            client_id: 1,
            index: 0
        })
    );
    assert_eq!(
        restore(state(&[5, 2, 0, 2, 1, 1, 3], b"\x05\x02\x01\x03\x05")),
        Err(SnapshotError::SessionIndex {
            client_id: 2,
            index: 3
        })
    );
    assert!(matches!(
        restore(state(&[5, 2, 0, 1, 1, 1, 3], b"\x09")),
        Err(SnapshotError::InvalidField(CommandError::UnknownTag(9)))
    ));
    // Trailing bytes.
    assert_eq!(
        restore(state(&[5, 2, 0, 0], b"\x00")),
        Err(SnapshotError::Malformed(WireError::TrailingBytes(1)))
    );
}

#[test]
fn restored_store_continues_identically() {
    let mut a = sample();
    let mut b = KvStore::restore(&a.snapshot()).unwrap();
    for (i, cmd) in [
        Command::new(2, 2, Op::put("b", "")), // duplicate of a cached request
        Command::new(3, 1, Op::get("c")),     // expired
        Command::new(5, 1, Op::put("e", "5")), // new client, evicts one
        Command::new(1, 1, Op::put("a", "again")), // possibly evicted client
    ]
    .iter()
    .enumerate()
    {
        let bytes = cmd.encode().unwrap();
        let index = 10 + i as u64;
        assert_eq!(a.apply(index, &bytes), b.apply(index, &bytes));
    }
    assert_eq!(a, b);
    assert_eq!(a.digest(), b.digest());
}
