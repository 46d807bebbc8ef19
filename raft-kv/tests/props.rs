//! Property tests: the store against a naive model, replica determinism, snapshots, and codecs
//! fed arbitrary bytes.

use std::collections::BTreeMap;

use bytes::Bytes;
use proptest::prelude::*;
use raft_kv::{Applied, Command, KvConfig, KvStore, Op, Response, SNAPSHOT_FORMAT_VERSION};

/// One log entry.
#[derive(Debug, Clone)]
enum Entry {
    Command(Command),
    Noop,
    Garbage(Vec<u8>),
}

fn small_bytes(max_len: usize) -> impl Strategy<Value = Bytes> + Clone {
    prop::collection::vec(0u8..3, 0..=max_len).prop_map(Bytes::from)
}

fn op() -> impl Strategy<Value = Op> {
    let key = small_bytes(2);
    let value = small_bytes(3);
    prop_oneof![
        3 => (key.clone(), value.clone()).prop_map(|(k, v)| Op::put(k, v)),
        2 => key.clone().prop_map(Op::get),
        1 => key.clone().prop_map(Op::delete),
        2 => (key, prop::option::of(value.clone()), prop::option::of(value))
            .prop_map(|(k, e, n)| Op::cas(k, e, n)),
    ]
}

/// Commands over few clients, seqs and keys, so retries, expired requests, evictions and CAS
/// hits all happen often.
fn command() -> impl Strategy<Value = Command> {
    (0u64..6, 0u64..5, op()).prop_map(|(c, s, op)| Command::new(c, s, op))
}

fn entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        12 => command().prop_map(Entry::Command),
        1 => Just(Entry::Noop),
        1 => prop::collection::vec(any::<u8>(), 0..12).prop_map(Entry::Garbage),
    ]
}

/// Entries with strictly increasing, sometimes skipping, indices.
fn log() -> impl Strategy<Value = Vec<(u64, Entry)>> {
    prop::collection::vec((1u64..3, entry()), 0..120).prop_map(|v| {
        let mut index = 0;
        v.into_iter()
            .map(|(step, e)| {
                index += step;
                (index, e)
            })
            .collect()
    })
}

/// Applies one entry; `zero_copy` picks `apply_bytes` over `apply`.
fn apply(store: &mut KvStore, index: u64, entry: &Entry, zero_copy: bool) -> Option<Applied> {
    let bytes = match entry {
        Entry::Noop => {
            store.apply_noop(index).unwrap();
            return None;
        }
        Entry::Command(cmd) => cmd.encode().unwrap(),
        Entry::Garbage(g) => Bytes::copy_from_slice(g),
    };
    Some(if zero_copy {
        store.apply_bytes(index, &bytes).unwrap()
    } else {
        store.apply(index, &bytes).unwrap()
    })
}

/// A naive restatement of the specification: linear scans, no secondary index.
struct Model {
    max: usize,
    data: BTreeMap<Bytes, Bytes>,
    /// (client, last seq, last index, response)
    sessions: Vec<(u64, u64, u64, Response)>,
}

impl Model {
    fn exec(&mut self, op: &Op) -> Response {
        match op.clone() {
            Op::Put { key, value } => Response::Put {
                previous: self.data.insert(key, value),
            },
            Op::Get { key } => Response::Get {
                value: self.data.get(&key).cloned(),
            },
            Op::Delete { key } => Response::Delete {
                previous: self.data.remove(&key),
            },
            Op::Cas { key, expected, new } => {
                let current = self.data.get(&key).cloned();
                let succeeded = current == expected;
                if succeeded {
                    if let Some(v) = new {
                        self.data.insert(key, v);
                    } else {
                        self.data.remove(&key);
                    }
                }
                Response::Cas { succeeded, current }
            }
        }
    }

    /// The response and the duplicate flag.
    fn apply(&mut self, index: u64, cmd: &Command) -> (Response, bool) {
        if cmd.client_id == 0 {
            return (self.exec(&cmd.op), false);
        }
        if let Some(s) = self.sessions.iter_mut().find(|s| s.0 == cmd.client_id) {
            s.2 = index;
            if cmd.seq == s.1 {
                return (s.3.clone(), true);
            }
            if cmd.seq < s.1 {
                return (Response::SessionExpired, false);
            }
        }
        let response = self.exec(&cmd.op);
        if let Some(s) = self.sessions.iter_mut().find(|s| s.0 == cmd.client_id) {
            s.1 = cmd.seq;
            s.3 = response.clone();
        } else {
            self.sessions
                .push((cmd.client_id, cmd.seq, index, response.clone()));
            if self.sessions.len() > self.max {
                let oldest = (0..self.sessions.len())
                    .min_by_key(|&i| self.sessions[i].2)
                    .unwrap();
                self.sessions.remove(oldest);
            }
        }
        (response, false)
    }
}

fn seal(state: &[u8]) -> Vec<u8> {
    let mut out = b"RKVS".to_vec();
    out.push(SNAPSHOT_FORMAT_VERSION);
    out.extend_from_slice(state);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in &out {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    out.extend_from_slice(&h.to_le_bytes());
    out
}

/// A reader that hands out at most `step` bytes per read.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.step.min(out.len()).min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn store_agrees_with_the_naive_model(max in 0usize..5, log in log()) {
        let mut store = KvStore::new(KvConfig { max_sessions: max });
        let mut model = Model { max, data: BTreeMap::new(), sessions: Vec::new() };
        for (index, entry) in &log {
            let applied = apply(&mut store, *index, entry, false);
            match (entry, applied) {
                (Entry::Command(cmd), Some(a)) => {
                    let (response, duplicate) = model.apply(*index, cmd);
                    prop_assert_eq!(&a.response, &response);
                    prop_assert_eq!(a.duplicate, duplicate);
                    prop_assert_eq!((a.index, a.client_id, a.seq), (*index, cmd.client_id, cmd.seq));
                }
                (Entry::Garbage(g), Some(a)) => {
                    // Random bytes could spell a valid command; apply it to the model too.
                    match Command::decode(g) {
                        Ok(cmd) => {
                            let (response, _) = model.apply(*index, &cmd);
                            prop_assert_eq!(&a.response, &response);
                        }
                        Err(_) => {
                            let is_invalid = matches!(a.response, Response::Invalid { .. });
                            prop_assert!(is_invalid);
                        }
                    }
                }
                (Entry::Noop, None) => {}
                (e, a) => prop_assert!(false, "{:?} gave {:?}", e, a),
            }
            prop_assert_eq!(store.last_applied(), *index);
        }
        let data: BTreeMap<Bytes, Bytes> =
            store.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        prop_assert_eq!(data, model.data.clone());
        prop_assert_eq!(store.session_count(), model.sessions.len());
        prop_assert!(store.session_count() <= max);
        for (client, seq, index, response) in &model.sessions {
            let s = store.session(*client);
            prop_assert!(s.is_some(), "client {} missing", client);
            let s = s.unwrap();
            prop_assert_eq!((s.last_seq(), s.last_index(), s.response()), (*seq, *index, response));
        }
    }

    #[test]
    fn replicas_fed_the_same_log_are_equal(max in 0usize..5, log in log()) {
        let mut a = KvStore::new(KvConfig { max_sessions: max });
        let mut b = KvStore::new(KvConfig { max_sessions: max });
        for (index, entry) in &log {
            let x = apply(&mut a, *index, entry, false);
            let y = apply(&mut b, *index, entry, true);
            if let Some(applied) = &x {
                // Every response the store produces survives its codec.
                let bytes = applied.response.encode().unwrap();
                prop_assert_eq!(Response::decode(&bytes), Ok(applied.response.clone()));
            }
            prop_assert_eq!(x, y);
        }
        prop_assert_eq!(a.digest(), b.digest());
        prop_assert_eq!(a.snapshot(), b.snapshot());
        prop_assert_eq!(&a, &b);
    }

    #[test]
    fn snapshot_restores_an_equal_store_that_continues_identically(
        max in 0usize..5,
        log in log(),
        split in any::<prop::sample::Index>(),
    ) {
        let at = if log.is_empty() { 0 } else { split.index(log.len()) };
        let mut original = KvStore::new(KvConfig { max_sessions: max });
        for (index, entry) in &log[..at] {
            apply(&mut original, *index, entry, false);
        }
        let snap = original.snapshot();
        let mut restored = KvStore::restore(&snap).unwrap();
        prop_assert_eq!(&restored, &original);
        prop_assert_eq!(restored.digest(), original.digest());
        prop_assert_eq!(restored.snapshot(), snap);
        for (index, entry) in &log[at..] {
            let x = apply(&mut original, *index, entry, false);
            let y = apply(&mut restored, *index, entry, false);
            prop_assert_eq!(x, y);
        }
        prop_assert_eq!(restored.digest(), original.digest());
        prop_assert_eq!(&restored, &original);
    }

    #[test]
    fn streamed_snapshots_equal_the_whole_one_and_restore_alike(
        max in 0usize..5,
        log in log(),
        chunk in 1usize..300,
        read in 1usize..200,
        cut in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let mut store = KvStore::new(KvConfig { max_sessions: max });
        for (index, entry) in &log {
            apply(&mut store, *index, entry, false);
        }
        let whole = store.snapshot();
        let mut writer = store.snapshot_writer();
        let mut streamed = Vec::new();
        let mut calls = 0;
        while writer.write_chunk(&mut streamed, chunk) {
            calls += 1;
            prop_assert!(calls < 100_000);
        }
        prop_assert_eq!(&streamed[..], &whole[..]);
        let restored = KvStore::restore_from(Trickle { data: &whole, step: read }).unwrap();
        prop_assert_eq!(&restored, &store);
        // Damage or a cut is found by the streaming reader as by the whole one.
        let mut bad = whole.to_vec();
        let i = cut.index(bad.len());
        bad[i] ^= flip;
        let restore = |data: &[u8]| KvStore::restore_from(Trickle { data, step: read });
        prop_assert!(restore(&bad).is_err());
        prop_assert!(restore(&whole[..i]).is_err());
        let mut longer = whole.to_vec();
        longer.push(0);
        prop_assert!(restore(&longer).is_err());
    }

    #[test]
    fn any_changed_snapshot_byte_is_an_error(
        log in log(),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let mut store = KvStore::new(KvConfig { max_sessions: 3 });
        for (index, entry) in &log {
            apply(&mut store, *index, entry, false);
        }
        let mut snap = store.snapshot().to_vec();
        let i = at.index(snap.len());
        snap[i] ^= flip;
        prop_assert!(KvStore::restore(&snap).is_err());
    }

    #[test]
    fn command_round_trips(
        client_id in any::<u64>(),
        seq in any::<u64>(),
        key in prop::collection::vec(any::<u8>(), 0..64),
        value in prop::collection::vec(any::<u8>(), 0..256),
        expected in prop::option::of(prop::collection::vec(any::<u8>(), 0..16)),
        kind in 0u8..4,
    ) {
        let key = Bytes::from(key);
        let op = match kind {
            0 => Op::put(key, value),
            1 => Op::get(key),
            2 => Op::delete(key),
            _ => Op::cas(key, expected.map(Bytes::from), Some(Bytes::from(value))),
        };
        let cmd = Command::new(client_id, seq, op);
        let bytes = cmd.encode().unwrap();
        prop_assert_eq!(bytes.len(), cmd.encoded_len());
        prop_assert_eq!(Command::decode(&bytes), Ok(cmd.clone()));
        prop_assert_eq!(Command::decode_bytes(&bytes), Ok(cmd));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_decode_canonically(
        data in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        if let Ok(cmd) = Command::decode(&data) {
            prop_assert_eq!(&cmd.encode().unwrap()[..], &data[..]);
        }
        if let Ok(resp) = Response::decode(&data) {
            prop_assert_eq!(&resp.encode().unwrap()[..], &data[..]);
        }
        let _ = KvStore::restore(&data);
        // Behind a valid checksum the field parser itself sees the bytes.
        if let Ok(store) = KvStore::restore(&seal(&data)) {
            prop_assert_eq!(&store.snapshot()[..], &seal(&data)[..]);
        }
    }

    #[test]
    fn mutated_encodings_never_panic(
        cmd in command(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
    ) {
        let mut cmd_bytes = cmd.encode().unwrap().to_vec();
        let mut store = KvStore::new(KvConfig { max_sessions: 2 });
        store.apply(1, &cmd_bytes).unwrap();
        store.apply(2, b"\x01\x02\x03").unwrap();
        let mut snap_state = store.snapshot().to_vec();
        snap_state.truncate(snap_state.len() - 8);
        snap_state.drain(..5);
        for buf in [&mut cmd_bytes, &mut snap_state] {
            for (at, byte, how) in &edits {
                match how {
                    0 if !buf.is_empty() => { let i = at.index(buf.len()); buf[i] = *byte; }
                    1 => { let i = at.index(buf.len() + 1); buf.insert(i, *byte); }
                    _ if !buf.is_empty() => { let i = at.index(buf.len()); buf.truncate(i); }
                    _ => {}
                }
            }
        }
        if let Ok(c) = Command::decode(&cmd_bytes) {
            prop_assert_eq!(&c.encode().unwrap()[..], &cmd_bytes[..]);
        }
        let _ = Response::decode(&cmd_bytes);
        if let Ok(s) = KvStore::restore(&seal(&snap_state)) {
            prop_assert_eq!(&s.snapshot()[..], &seal(&snap_state)[..]);
        }
    }
}
