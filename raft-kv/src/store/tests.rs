use super::*;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn some(s: &str) -> Option<Bytes> {
    Some(b(s))
}

/// Applies `op` for `client` with `seq` at `index`, through the encoder.
fn run(store: &mut KvStore, index: u64, client: u64, seq: u64, op: Op) -> Applied {
    let bytes = Command::new(client, seq, op).encode().unwrap();
    store.apply(index, &bytes).unwrap()
}

fn value(store: &KvStore, key: &str) -> Option<Bytes> {
    store.get(key.as_bytes()).cloned()
}

#[test]
fn put_get_delete_return_previous_and_current_values() {
    let mut s = KvStore::default();
    let a = run(&mut s, 1, 0, 0, Op::put("k", "1"));
    assert_eq!(a.response, Response::Put { previous: None });
    assert_eq!((a.index, a.client_id, a.seq, a.duplicate), (1, 0, 0, false));
    let a = run(&mut s, 2, 0, 0, Op::put("k", "2"));
    assert_eq!(
        a.response,
        Response::Put {
            previous: some("1")
        }
    );
    assert_eq!(
        run(&mut s, 3, 0, 0, Op::get("k")).response,
        Response::Get { value: some("2") }
    );
    assert_eq!(
        run(&mut s, 4, 0, 0, Op::get("other")).response,
        Response::Get { value: None }
    );
    assert_eq!(
        run(&mut s, 5, 0, 0, Op::delete("k")).response,
        Response::Delete {
            previous: some("2")
        }
    );
    assert_eq!(
        run(&mut s, 6, 0, 0, Op::delete("k")).response,
        Response::Delete { previous: None }
    );
    assert!(s.is_empty());
    assert_eq!(s.last_applied(), 6);
}

#[test]
fn cas_success_failure_absent_and_delete() {
    let mut s = KvStore::default();
    // Absent key, expected absent: succeeds and creates.
    let r = run(&mut s, 1, 0, 0, Op::cas("k", None, some("a"))).response;
    assert_eq!(
        r,
        Response::Cas {
            succeeded: true,
            current: None
        }
    );
    assert_eq!(value(&s, "k"), some("a"));
    // Present key, expected absent: fails and reports the current value.
    let r = run(&mut s, 2, 0, 0, Op::cas("k", None, some("b"))).response;
    assert_eq!(
        r,
        Response::Cas {
            succeeded: false,
            current: some("a")
        }
    );
    assert_eq!(value(&s, "k"), some("a"));
    // Wrong expected value: fails.
    let r = run(&mut s, 3, 0, 0, Op::cas("k", some("z"), some("b"))).response;
    assert_eq!(
        r,
        Response::Cas {
            succeeded: false,
            current: some("a")
        }
    );
    assert_eq!(value(&s, "k"), some("a"));
    // Right expected value: succeeds and writes.
    let r = run(&mut s, 4, 0, 0, Op::cas("k", some("a"), some("b"))).response;
    assert_eq!(
        r,
        Response::Cas {
            succeeded: true,
            current: some("a")
        }
    );
    assert_eq!(value(&s, "k"), some("b"));
    // New value absent: succeeds and deletes.
    let r = run(&mut s, 5, 0, 0, Op::cas("k", some("b"), None)).response;
    assert_eq!(
        r,
        Response::Cas {
            succeeded: true,
            current: some("b")
        }
    );
    assert_eq!(value(&s, "k"), None);
    // Absent key, expected a value: fails.
    let r = run(&mut s, 6, 0, 0, Op::cas("k", some("b"), some("c"))).response;
    assert_eq!(
        r,
        Response::Cas {
            succeeded: false,
            current: None
        }
    );
    assert!(s.is_empty());
}

#[test]
fn retried_put_is_applied_once() {
    let mut s = KvStore::default();
    let first = run(&mut s, 1, 1, 1, Op::put("k", "from-1"));
    run(&mut s, 2, 2, 1, Op::put("k", "from-2"));
    let retry = run(&mut s, 3, 1, 1, Op::put("k", "from-1"));
    assert!(retry.duplicate);
    assert!(!first.duplicate);
    assert_eq!(retry.response, first.response);
    assert_eq!((retry.index, retry.client_id, retry.seq), (3, 1, 1));
    // The other client's later write stands.
    assert_eq!(value(&s, "k"), some("from-2"));
    assert_eq!(s.last_applied(), 3);
    assert_eq!(s.session(1).map(Session::last_index), Some(3));
}

#[test]
fn retried_get_returns_the_cached_value() {
    let mut s = KvStore::default();
    run(&mut s, 1, 0, 0, Op::put("k", "old"));
    let first = run(&mut s, 2, 1, 1, Op::get("k"));
    run(&mut s, 3, 0, 0, Op::put("k", "new"));
    let retry = run(&mut s, 4, 1, 1, Op::get("k"));
    assert!(retry.duplicate);
    assert_eq!(retry.response, Response::Get { value: some("old") });
    assert_eq!(retry.response, first.response);
}

#[test]
fn older_seq_gets_session_expired_and_is_not_applied() {
    let mut s = KvStore::default();
    run(&mut s, 1, 1, 5, Op::put("k", "a"));
    run(&mut s, 2, 1, 6, Op::put("k", "b"));
    let old = run(&mut s, 3, 1, 5, Op::put("k", "a"));
    assert_eq!(old.response, Response::SessionExpired);
    assert!(!old.duplicate);
    assert_eq!(value(&s, "k"), some("b"));
    assert_eq!(s.session(1).map(Session::last_seq), Some(6));
    // A newer seq is applied again.
    let next = run(&mut s, 4, 1, 9, Op::delete("k"));
    assert_eq!(
        next.response,
        Response::Delete {
            previous: some("b")
        }
    );
    assert_eq!(s.session(1).map(Session::response), Some(&next.response));
}

#[test]
fn client_zero_has_no_duplicate_detection() {
    let mut s = KvStore::default();
    run(&mut s, 1, 0, 1, Op::put("k", "a"));
    run(&mut s, 2, 2, 1, Op::put("k", "b"));
    let again = run(&mut s, 3, 0, 1, Op::put("k", "a"));
    assert!(!again.duplicate);
    assert_eq!(
        again.response,
        Response::Put {
            previous: some("b")
        }
    );
    assert_eq!(value(&s, "k"), some("a"));
    // An older seq from client 0 is applied too.
    let older = run(&mut s, 4, 0, 0, Op::get("k"));
    assert_eq!(older.response, Response::Get { value: some("a") });
    assert!(s.session(0).is_none());
    assert_eq!(s.session_count(), 1);
}

#[test]
fn sessions_are_bounded_and_evict_the_least_recently_used() {
    let mut s = KvStore::new(KvConfig { max_sessions: 3 });
    run(&mut s, 1, 1, 1, Op::put("a", "1"));
    run(&mut s, 2, 2, 1, Op::put("b", "1"));
    run(&mut s, 3, 3, 1, Op::put("c", "1"));
    // Client 1 retries, so client 2 becomes the least recently used.
    assert!(run(&mut s, 4, 1, 1, Op::put("a", "1")).duplicate);
    run(&mut s, 5, 4, 1, Op::put("d", "1"));
    assert_eq!(s.session_count(), 3);
    assert!(s.session(2).is_none());
    for c in [1, 3, 4] {
        assert!(s.session(c).is_some(), "client {c}");
    }
    // An expired request also counts as a use: client 3 survives the next eviction.
    run(&mut s, 6, 3, 2, Op::get("c"));
    assert_eq!(
        run(&mut s, 7, 3, 1, Op::get("c")).response,
        Response::SessionExpired
    );
    run(&mut s, 8, 5, 1, Op::get("e"));
    assert!(s.session(1).is_none());
    assert!(s.session(3).is_some());
    assert_eq!(s.session_count(), 3);
    // The evicted client is a stranger: its retry is applied again.
    let retry = run(&mut s, 9, 2, 1, Op::put("b", "1"));
    assert!(!retry.duplicate);
    assert_eq!(
        retry.response,
        Response::Put {
            previous: some("1")
        }
    );
    assert_eq!(s.session_count(), 3);
}

#[test]
fn zero_max_sessions_disables_duplicate_detection() {
    let mut s = KvStore::new(KvConfig { max_sessions: 0 });
    run(&mut s, 1, 1, 1, Op::put("k", "a"));
    let retry = run(&mut s, 2, 1, 1, Op::put("k", "a"));
    assert!(!retry.duplicate);
    assert_eq!(
        retry.response,
        Response::Put {
            previous: some("a")
        }
    );
    assert_eq!(s.session_count(), 0);
}

#[test]
fn same_commands_give_equal_stores_with_eviction() {
    let config = KvConfig { max_sessions: 4 };
    let mut a = KvStore::new(config);
    let mut b = KvStore::new(config);
    let mut index = 0;
    for round in 0..50u64 {
        for client in 0..10u64 {
            index += 1;
            let key = format!("k{}", (round * 7 + client) % 13);
            let op = match (round + client) % 4 {
                0 => Op::put(key, format!("v{round}")),
                1 => Op::get(key),
                2 => Op::delete(key),
                _ => Op::cas(key, None, some("c")),
            };
            let seq = round - round % 3; // repeats make some retries
            let bytes = Command::new(client, seq, op).encode().unwrap();
            assert_eq!(a.apply(index, &bytes), b.apply(index, &bytes));
        }
    }
    assert_eq!(a.session_count(), 4);
    assert_eq!(a, b);
    assert_eq!(a.digest(), b.digest());
    // A store that saw one more write differs.
    run(&mut b, index + 1, 0, 0, Op::put("x", "y"));
    assert_ne!(a.digest(), b.digest());
}

#[test]
fn apply_index_must_increase_and_refusal_changes_nothing() {
    let mut s = KvStore::default();
    run(&mut s, 5, 1, 1, Op::put("k", "a"));
    let before = s.clone();
    let put = Command::new(1, 2, Op::put("k", "b")).encode().unwrap();
    for index in [0, 4, 5] {
        assert_eq!(
            s.apply(index, &put),
            Err(ApplyError::IndexNotIncreasing {
                index,
                last_applied: 5
            })
        );
        assert_eq!(
            s.apply_bytes(index, &put),
            Err(ApplyError::IndexNotIncreasing {
                index,
                last_applied: 5
            })
        );
        assert!(s.apply_noop(index).is_err());
        assert!(s.apply(index, b"garbage").is_err());
    }
    assert_eq!(s, before);
    // Gaps are allowed; no-ops move the index only.
    s.apply_noop(9).unwrap();
    assert_eq!(s.last_applied(), 9);
    assert_eq!(value(&s, "k"), some("a"));
    assert_eq!(s.session(1).map(Session::last_seq), Some(1));
    assert!(s.apply(9, &put).is_err());
    assert_eq!(s.apply(10, &put).map(|a| a.index), Ok(10));
}

#[test]
fn undecodable_entry_is_recorded_as_invalid_on_every_replica() {
    let mut a = KvStore::default();
    let mut b = KvStore::default();
    run(&mut a, 1, 1, 1, Op::put("k", "a"));
    run(&mut b, 1, 1, 1, Op::put("k", "a"));
    let snapshot_before = a.snapshot();
    for (i, garbage) in [
        &b""[..],
        b"\x09",
        b"\x01\x01\x01\x07",
        b"\x01\x01\x02\x02\x01k\x00",
    ]
    .into_iter()
    .enumerate()
    {
        let index = 2 + i as u64;
        let x = a.apply(index, garbage).unwrap();
        let y = b
            .apply_bytes(index, &Bytes::copy_from_slice(garbage))
            .unwrap();
        assert_eq!(x, y);
        assert!(matches!(x.response, Response::Invalid { .. }), "{x:?}");
        assert_eq!((x.client_id, x.seq, x.duplicate), (0, 0, false));
        assert_eq!(a.last_applied(), index);
    }
    let Response::Invalid { reason } = a.apply(10, b"\x02").unwrap().response else {
        panic!("not invalid")
    };
    assert_eq!(reason, "unsupported format version 2");
    // Only the index moved.
    let mut expected = KvStore::restore(&snapshot_before).unwrap();
    expected.apply_noop(10).unwrap();
    assert_eq!(a, expected);
}

#[test]
fn apply_bytes_keeps_slices_and_matches_apply() {
    let mut a = KvStore::default();
    let mut b = KvStore::default();
    let bytes = Command::new(3, 1, Op::put("key", "value"))
        .encode()
        .unwrap();
    assert_eq!(a.apply(1, &bytes), b.apply_bytes(1, &bytes));
    assert_eq!(a, b);
    let stored = b.get(b"key").unwrap();
    let start = bytes.as_ptr() as usize;
    assert!((start..start + bytes.len()).contains(&(stored.as_ptr() as usize)));
    let copied = a.get(b"key").unwrap();
    assert!(!(start..start + bytes.len()).contains(&(copied.as_ptr() as usize)));
}

#[test]
fn accessors() {
    let mut s = KvStore::new(KvConfig { max_sessions: 7 });
    assert_eq!(s.config(), KvConfig { max_sessions: 7 });
    assert_eq!(
        KvStore::default().config().max_sessions,
        DEFAULT_MAX_SESSIONS
    );
    assert_eq!((s.len(), s.is_empty(), s.last_applied()), (0, true, 0));
    run(&mut s, 1, 0, 0, Op::put("b", "2"));
    run(&mut s, 2, 0, 0, Op::put("a", "1"));
    let all: Vec<_> = s.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(all, vec![(b("a"), b("1")), (b("b"), b("2"))]);
    assert_eq!(s.len(), 2);
}
