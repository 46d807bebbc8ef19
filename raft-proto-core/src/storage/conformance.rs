//! The behaviour every [`Storage`] backend must show, as a test suite generic over the trait.
//!
//! A backend's tests call [`run_all`] with two closures: `fresh` makes an empty store, and
//! `reopen` stands for a restart (close the store and open it again from what is durable; an
//! in-memory backend returns it unchanged). After every reopen the suite calls
//! [`Storage::recover`], as a driver does before anything else. Failures panic with the case's
//! name and what differed. [`cases`] lists the cases one by one for a backend that wants to run
//! them separately.
//!
//! The suite also pins down what the trait's documentation implies but does not spell out:
//! writes that do not continue the log, truncations into the compacted or snapshot-covered
//! prefix, compaction past the snapshot and snapshot chunks outside `begin`/`finish` are
//! refused with an error, and a refused call changes nothing.

use bytes::Bytes;

use super::Storage;
use crate::config::RecoveredState;
use crate::io::PersistWrite;
use crate::membership::Membership;
use crate::types::{Entry, EntryKind, HardState, Index, SnapshotMeta, Term};

/// Makes an empty store.
pub type Fresh<'a, S> = &'a mut dyn FnMut() -> S;
/// Closes a store and opens it again from what is durable.
pub type Reopen<'a, S> = &'a mut dyn FnMut(S) -> S;

/// One named case of the suite.
pub struct Case<S> {
    /// What the case checks.
    pub name: &'static str,
    /// Runs the case; panics on a failure.
    pub run: fn(Fresh<'_, S>, Reopen<'_, S>),
}

/// Every case of the suite, in the order [`run_all`] runs them.
pub fn cases<S: Storage>() -> Vec<Case<S>> {
    macro_rules! list {
        ($($f:ident),* $(,)?) => { vec![$(Case { name: stringify!($f), run: $f::<S> }),*] };
    }
    list![
        empty_store,
        append_and_read,
        several_writes_in_one_call,
        truncate_inside_log,
        truncate_at_last_plus_one,
        truncate_without_append,
        truncate_and_append_in_one_call,
        hard_state_round_trip,
        empty_writes,
        entry_kinds_and_payloads,
        failing_batch_applies_nothing,
        writes_that_do_not_continue_are_refused,
        compaction_and_reads_across_it,
        compaction_limits,
        truncation_into_the_snapshot_is_refused,
        snapshot_chunks_and_offsets,
        large_snapshot_chunk,
        snapshot_with_continuing_log,
        snapshot_with_non_continuing_log,
        snapshot_beyond_the_log,
        snapshot_replaces_older_one,
        restarted_snapshot_transfer,
        unfinished_snapshot_is_abandoned,
        snapshot_calls_out_of_order_are_refused,
        recovery_after_reopen,
    ]
}

/// Runs every case of the suite against the backend.
pub fn run_all<S: Storage>(mut fresh: impl FnMut() -> S, mut reopen: impl FnMut(S) -> S) {
    for case in cases::<S>() {
        eprintln!("storage conformance: {}", case.name);
        (case.run)(&mut fresh, &mut reopen);
    }
}

// ---- helpers ------------------------------------------------------------------------------

fn ok<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{what}: unexpected error: {e}"),
    }
}

fn refused<T: std::fmt::Debug, E>(r: Result<T, E>, what: &str) {
    if let Ok(v) = r {
        panic!("{what}: expected an error, got Ok({v:?})");
    }
}

/// A normal entry whose payload names its position, so mix-ups show.
fn ent(index: Index, term: Term) -> Entry {
    Entry {
        term,
        index,
        kind: EntryKind::Normal,
        data: Bytes::from(format!("entry {index} of term {term}")),
    }
}

fn run(lo: Index, hi: Index, term: Term) -> Vec<Entry> {
    (lo..=hi).map(|i| ent(i, term)).collect()
}

fn hs(term: Term, vote: u64, commit: Index) -> HardState {
    HardState { term, vote, commit }
}

fn append(entries: Vec<Entry>) -> PersistWrite {
    PersistWrite {
        entries,
        ..PersistWrite::default()
    }
}

fn cut(at: Index, entries: Vec<Entry>) -> PersistWrite {
    PersistWrite {
        truncate_from: Some(at),
        entries,
        ..PersistWrite::default()
    }
}

fn with_hs(mut w: PersistWrite, h: HardState) -> PersistWrite {
    w.hard_state = Some(h);
    w
}

fn write<S: Storage>(s: &mut S, writes: &[PersistWrite]) {
    ok(s.write(writes), "write");
}

fn install<S: Storage>(s: &mut S, meta: SnapshotMeta, chunks: &[&[u8]]) {
    ok(s.begin_snapshot(meta), "begin_snapshot");
    for c in chunks {
        ok(s.write_snapshot_chunk(c), "write_snapshot_chunk");
    }
    ok(s.finish_snapshot(), "finish_snapshot");
}

/// Snapshot metadata whose membership differs by index, so that a backend must keep it whole
/// (voters, a joint outgoing set on even indexes, a learner with its data).
fn meta(last_index: Index, last_term: Term) -> SnapshotMeta {
    SnapshotMeta {
        last_index,
        last_term,
        membership: Membership::new(
            vec![1, 2, 3],
            if last_index.is_multiple_of(2) {
                vec![1, 2, 4]
            } else {
                Vec::new()
            },
            vec![last_index + 10],
            [(
                last_index + 10,
                bytes::Bytes::from(format!("node-{last_index}")),
            )]
            .into(),
        )
        .expect("a valid membership")
        .into(),
    }
}

fn restart<S: Storage>(s: S, reopen: Reopen<'_, S>) -> (S, RecoveredState) {
    let mut s = reopen(s);
    let rec = ok(s.recover(), "recover after reopen");
    if let Err(e) = rec.validate() {
        panic!("recovered state does not validate: {e}: {rec:?}");
    }
    (s, rec)
}

/// Checks the log bounds and that `entries(lo, hi)` over the whole kept range is `expected`.
fn check_log<S: Storage>(s: &S, first: Index, last: Index, expected: &[Entry], what: &str) {
    assert_eq!(
        ok(s.first_index(), "first_index"),
        first,
        "{what}: first_index"
    );
    assert_eq!(ok(s.last_index(), "last_index"), last, "{what}: last_index");
    let got = ok(s.entries(0, last.saturating_add(10)), "entries");
    assert_eq!(got, expected, "{what}: entries(0, last + 10)");
}

/// Reads the whole snapshot data with reads of `step` bytes.
fn read_all<S: Storage>(s: &S, step: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = ok(s.read_snapshot_chunk(out.len() as u64, step), "read");
        if b.is_empty() {
            return out;
        }
        assert!(
            b.len() <= step,
            "read_snapshot_chunk returned more than max_len"
        );
        out.extend_from_slice(&b);
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

// ---- log cases ----------------------------------------------------------------------------

fn empty_store<S: Storage>(fresh: Fresh<'_, S>, reopen: Reopen<'_, S>) {
    let mut s = fresh();
    for round in ["fresh", "reopened"] {
        check_log(&s, 1, 0, &[], round);
        assert_eq!(ok(s.hard_state(), "hard_state"), HardState::default());
        assert_eq!(ok(s.snapshot_meta(), "snapshot_meta"), None, "{round}");
        assert!(
            ok(s.read_snapshot_chunk(0, 10), "read").is_empty(),
            "{round}"
        );
        let (s2, rec) = restart(s, reopen);
        assert_eq!(rec, RecoveredState::default(), "{round}");
        s = s2;
    }
}

fn append_and_read<S: Storage>(fresh: Fresh<'_, S>, reopen: Reopen<'_, S>) {
    let mut s = fresh();
    let all = run(1, 5, 1);
    write(&mut s, &[with_hs(append(all.clone()), hs(1, 2, 3))]);
    check_log(&s, 1, 5, &all, "after append");
    assert_eq!(ok(s.entries(2, 4), "entries"), all[1..3].to_vec());
    assert_eq!(ok(s.entries(5, 6), "entries"), all[4..].to_vec());
    assert!(ok(s.entries(6, 9), "entries").is_empty());
    assert!(ok(s.entries(4, 2), "entries").is_empty(), "lo > hi");
    assert!(ok(s.entries(3, 3), "entries").is_empty(), "lo == hi");
    write(&mut s, &[append(run(6, 7, 1))]);
    let (s, rec) = restart(s, reopen);
    check_log(&s, 1, 7, &run(1, 7, 1), "after reopen");
    assert_eq!(rec.entries, run(1, 7, 1));
    assert_eq!(rec.hard_state, hs(1, 2, 3));
}

fn several_writes_in_one_call<S: Storage>(fresh: Fresh<'_, S>, reopen: Reopen<'_, S>) {
    let mut s = fresh();
    write(
        &mut s,
        &[
            with_hs(append(run(1, 3, 1)), hs(1, 1, 0)),
            append(run(4, 5, 1)),
            with_hs(PersistWrite::default(), hs(2, 0, 4)),
            with_hs(append(run(6, 6, 2)), hs(2, 3, 5)),
        ],
    );
    let mut expected = run(1, 5, 1);
    expected.push(ent(6, 2));
    check_log(&s, 1, 6, &expected, "after the call");
    assert_eq!(
        ok(s.hard_state(), "hard_state"),
        hs(2, 3, 5),
        "last hard state wins"
    );
    let (s, rec) = restart(s, reopen);
    check_log(&s, 1, 6, &expected, "after reopen");
    assert_eq!(rec.hard_state, hs(2, 3, 5));
}

fn truncate_inside_log<S: Storage>(fresh: Fresh<'_, S>, reopen: Reopen<'_, S>) {
    let mut s = fresh();
    write(&mut s, &[with_hs(append(run(1, 6, 1)), hs(1, 1, 2))]);
    write(&mut s, &[with_hs(cut(3, run(3, 4, 2)), hs(2, 2, 2))]);
    let mut expected = run(1, 2, 1);
    expected.extend(run(3, 4, 2));
    check_log(&s, 1, 4, &expected, "after the cut");
    assert!(
        ok(s.entries(5, 7), "entries").is_empty(),
        "cut entries are gone"
    );
    let (mut s, rec) = restart(s, reopen);
    check_log(&s, 1, 4, &expected, "after reopen");
    assert_eq!(rec.entries, expected);
    // The log grows again from the cut.
    write(&mut s, &[append(run(5, 5, 2))]);
    assert_eq!(ok(s.entries(5, 6), "entries"), vec![ent(5, 2)]);
}

fn truncate_at_last_plus_one<S: Storage>(fresh: Fresh<'_, S>, reopen: Reopen<'_, S>) {
    let mut s = fresh();
    write(&mut s, &[with_hs(append(run(1, 3, 1)), hs(1, 0, 0))]);
    write(&mut s, &[cut(4, run(4, 5, 1))]);
    check_log(&s, 1, 5, &run(1, 5, 1), "cut at last + 1 then append");
    write(&mut s, &[cut(6, Vec::new())]);
    check_log(&s, 1, 5, &run(1, 5, 1), "cut at last + 1 alone");
    let (s, _) = restart(s, reopen);
    check_log(&s, 1, 5, &run(1, 5, 1), "after reopen");
}

fn truncate_without_append<S: Storage>(fresh: Fresh<'_, S>, reopen: Reopen<'_, S>) {
    let mut s = fresh();
    write(&mut s, &[with_hs(append(run(1, 4, 1)), hs(1, 0, 1))]);
    write(&mut s, &[cut(2, Vec::new())]);
    check_log(&s, 1, 1, &run(1, 1, 1), "after the cut");
    let (mut s, rec) = restart(s, reopen);
    assert_eq!(rec.entries, run(1, 1, 1));
    write(&mut s, &[cut(1, Vec::new())]);
    check_log(&s, 1, 0, &[], "cut of the whole log");
    write(&mut s, &[append(run(1, 2, 1))]);
    check_log(&s, 1, 2, &run(1, 2, 1), "append to the emptied log");
}

fn truncate_and_append_in_one_call<S: Storage>(fresh: Fresh<'_, S>, reopen: Reopen<'_, S>) {
    let mut s = fresh();
    write(&mut s, &[with_hs(append(run(1, 3, 1)), hs(1, 0, 0))]);
    write(
        &mut s,
        &[
            append(run(4, 6, 1)),
            with_hs(cut(5, run(5, 6, 2)), hs(2, 0, 3)),
            append(run(7, 7, 2)),
            cut(7, run(7, 8, 3)),
            with_hs(PersistWrite::default(), hs(3, 1, 4)),
        ],
    );
    let mut expected = run(1, 4, 1);
    expected.extend(run(5, 6, 2));
    expected.extend(run(7, 8, 3));
    check_log(&s, 1, 8, &expected, "after the call");
    let (s, rec) = restart(s, reopen);
    check_log(&s, 1, 8, &expected, "after reopen");
    assert_eq!(rec.hard_state, hs(3, 1, 4));
}

fn hard_state_round_trip<S: Storage>(fresh: Fresh<'_, S>, reopen: Reopen<'_, S>) {
    let mut s = fresh();
    write(&mut s, &[with_hs(PersistWrite::default(), hs(7, 3, 0))]);
    assert_eq!(ok(s.hard_state(), "hard_state"), hs(7, 3, 0));
    let (mut s, rec) = restart(s, reopen);
    assert_eq!(rec.hard_state, hs(7, 3, 0));
    write(&mut s, &[append(run(1, 2, 7))]);
    assert_eq!(
        ok(s.hard_state(), "hard_state"),
        hs(7, 3, 0),
        "kept without a new one"
    );
    let big = hs(u64::MAX / 4, u64::MAX, 2);
    write(&mut s, &[with_hs(PersistWrite::default(), big)]);
    let (s, rec) = restart(s, reopen);
    assert_eq!(rec.hard_state, big);
    assert_eq!(ok(s.hard_state(), "hard_state"), big);
}

fn empty_writes<S: Storage>(fresh: Fresh<'_, S>, reopen: Reopen<'_, S>) {
    let mut s = fresh();
    write(&mut s, &[]);
    write(&mut s, &[PersistWrite::default(), append(Vec::new())]);
    check_log(&s, 1, 0, &[], "after empty writes");
    write(&mut s, &[with_hs(append(run(1, 2, 1)), hs(1, 0, 0))]);
    write(&mut s, &[]);
    let (s, _) = restart(s, reopen);
    check_log(&s, 1, 2, &run(1, 2, 1), "after reopen");
}

fn entry_kinds_and_payloads<S: Storage>(fresh: Fresh<'_, S>, reopen: Reopen<'_, S>) {
    let mut s = fresh();
    let entries = vec![
        Entry {
            term: 1,
            index: 1,
            kind: EntryKind::Noop,
            data: Bytes::new(),
        },
        Entry {
            term: 1,
            index: 2,
            kind: EntryKind::Normal,
            data: Bytes::new(),
        },
        Entry {
            term: 2,
            index: 3,
            kind: EntryKind::Normal,
            data: Bytes::from(pattern(300_000, 9)),
        },
        Entry {
            term: 2,
            index: 4,
            kind: EntryKind::Normal,
            data: Bytes::from_static(&[0, 255, 0, 1]),
        },
    ];
    write(&mut s, &[with_hs(append(entries.clone()), hs(2, 0, 4))]);
    check_log(&s, 1, 4, &entries, "before reopen");
    let (s, rec) = restart(s, reopen);
    check_log(&s, 1, 4, &entries, "after reopen");
    assert_eq!(rec.entries, entries);
}

fn failing_batch_applies_nothing<S: Storage>(fresh: Fresh<'_, S>, reopen: Reopen<'_, S>) {
    let mut s = fresh();
    write(&mut s, &[with_hs(append(run(1, 3, 1)), hs(1, 1, 2))]);
    let bad_batches: Vec<Vec<PersistWrite>> = vec![
        // A good write, then one with a gap.
        vec![
            with_hs(append(run(4, 5, 2)), hs(2, 2, 4)),
            append(run(7, 7, 2)),
        ],
        // A cut and append, then an append that overlaps without a cut.
        vec![
            with_hs(cut(2, run(2, 3, 2)), hs(2, 0, 1)),
            append(run(3, 4, 2)),
        ],
        // Several good writes, the failing one last.
        vec![
            append(run(4, 4, 1)),
            with_hs(PersistWrite::default(), hs(5, 5, 4)),
            cut(2, Vec::new()),
            append(run(3, 3, 1)),
        ],
    ];
    for (i, batch) in bad_batches.iter().enumerate() {
        refused(s.write(batch), &format!("bad batch {i}"));
        check_log(&s, 1, 3, &run(1, 3, 1), &format!("after bad batch {i}"));
        assert_eq!(
            ok(s.hard_state(), "hard_state"),
            hs(1, 1, 2),
            "bad batch {i}"
        );
    }
    let (mut s, rec) = restart(s, reopen);
    check_log(&s, 1, 3, &run(1, 3, 1), "after reopen");
    assert_eq!(rec.hard_state, hs(1, 1, 2));
    // The store still works.
    write(&mut s, &[append(run(4, 4, 1))]);
    check_log(&s, 1, 4, &run(1, 4, 1), "a good write after the failures");
}

fn writes_that_do_not_continue_are_refused<S: Storage>(fresh: Fresh<'_, S>, _: Reopen<'_, S>) {
    let mut s = fresh();
    refused(s.write(&[append(run(0, 0, 1))]), "index 0");
    refused(s.write(&[append(run(2, 3, 1))]), "first entry above 1");
    write(&mut s, &[with_hs(append(run(1, 3, 1)), hs(1, 0, 0))]);
    refused(s.write(&[append(run(3, 4, 1))]), "overlap without a cut");
    refused(s.write(&[append(run(5, 5, 1))]), "gap");
    refused(s.write(&[cut(2, run(3, 3, 1))]), "entries above the cut");
    refused(
        s.write(&[cut(6, run(6, 6, 1))]),
        "cut beyond last + 1 with entries",
    );
    let mut jumbled = run(4, 6, 1);
    jumbled.swap(1, 2);
    refused(s.write(&[append(jumbled)]), "entries out of order");
    check_log(&s, 1, 3, &run(1, 3, 1), "after the refusals");
}

fn compaction_and_reads_across_it<S: Storage>(fresh: Fresh<'_, S>, reopen: Reopen<'_, S>) {
    let mut s = fresh();
    write(&mut s, &[with_hs(append(run(1, 10, 1)), hs(1, 0, 8))]);
    install(&mut s, meta(6, 1), &[b"state at 6"]);
    ok(s.compact(4), "compact 4");
    check_log(&s, 5, 10, &run(5, 10, 1), "after compact 4");
    assert!(
        ok(s.entries(1, 5), "entries").is_empty(),
        "below first_index"
    );
    assert_eq!(
        ok(s.entries(3, 7), "entries"),
        run(5, 6, 1),
        "across first_index"
    );
    ok(s.compact(6), "compact 6");
    check_log(&s, 7, 10, &run(7, 10, 1), "after compact 6");
    ok(s.compact(3), "compact below first_index");
    ok(s.compact(6), "compact again at the same point");
    check_log(&s, 7, 10, &run(7, 10, 1), "after no-op compactions");
    let (mut s, rec) = restart(s, reopen);
    check_log(&s, 7, 10, &run(7, 10, 1), "after reopen");
    assert_eq!(rec.snapshot, Some(meta(6, 1)));
    assert_eq!(rec.entries, run(7, 10, 1));
    write(&mut s, &[append(run(11, 11, 1))]);
    write(&mut s, &[cut(8, run(8, 8, 1))]);
    check_log(&s, 7, 8, &run(7, 8, 1), "cut above the compacted prefix");
}

fn compaction_limits<S: Storage>(fresh: Fresh<'_, S>, _: Reopen<'_, S>) {
    let mut s = fresh();
    write(&mut s, &[with_hs(append(run(1, 5, 1)), hs(1, 0, 5))]);
    ok(s.compact(0), "compact 0 without a snapshot");
    refused(s.compact(1), "compact without a snapshot");
    install(&mut s, meta(3, 1), &[b"s"]);
    refused(s.compact(4), "compact past the snapshot");
    check_log(&s, 1, 5, &run(1, 5, 1), "after refused compactions");
    ok(s.compact(3), "compact up to the snapshot");
    check_log(&s, 4, 5, &run(4, 5, 1), "after compact 3");
}

fn truncation_into_the_snapshot_is_refused<S: Storage>(fresh: Fresh<'_, S>, _: Reopen<'_, S>) {
    let mut s = fresh();
    write(&mut s, &[with_hs(append(run(1, 8, 1)), hs(1, 0, 6))]);
    install(&mut s, meta(5, 1), &[b"s"]);
    refused(
        s.write(&[cut(5, run(5, 5, 2))]),
        "cut at the snapshot, not compacted",
    );
    ok(s.compact(3), "compact 3");
    refused(
        s.write(&[cut(3, Vec::new())]),
        "cut into the compacted prefix",
    );
    refused(
        s.write(&[cut(4, Vec::new())]),
        "cut between compaction and snapshot",
    );
    check_log(&s, 4, 8, &run(4, 8, 1), "after the refusals");
    write(&mut s, &[cut(6, run(6, 6, 1))]);
    check_log(&s, 4, 6, &run(4, 6, 1), "cut just above the snapshot");
}

// ---- snapshot cases -----------------------------------------------------------------------

fn snapshot_chunks_and_offsets<S: Storage>(fresh: Fresh<'_, S>, reopen: Reopen<'_, S>) {
    let mut s = fresh();
    write(&mut s, &[with_hs(PersistWrite::default(), hs(2, 0, 0))]);
    let data = pattern(10_000, 1);
    ok(s.begin_snapshot(meta(5, 2)), "begin");
    for c in [&data[..1000], &data[1000..1001], &[][..], &data[1001..]] {
        ok(s.write_snapshot_chunk(c), "chunk");
        assert_eq!(
            ok(s.snapshot_meta(), "meta"),
            None,
            "not visible before finish"
        );
        assert!(ok(s.read_snapshot_chunk(0, 100), "read").is_empty());
        assert_eq!(ok(s.snapshot_len(), "len"), 0, "no snapshot yet");
    }
    ok(s.finish_snapshot(), "finish");
    for round in 0..2 {
        assert_eq!(
            ok(s.snapshot_meta(), "meta"),
            Some(meta(5, 2)),
            "round {round}"
        );
        assert_eq!(ok(s.snapshot_len(), "len"), 10_000, "round {round}");
        for (off, len) in [
            (0, 1),
            (0, 10_000),
            (999, 3),
            (1000, 1),
            (1234, 5000),
            (9999, 10),
        ] {
            let got = ok(s.read_snapshot_chunk(off, len), "read");
            let end = (off as usize + len).min(data.len());
            assert_eq!(
                &got[..],
                &data[off as usize..end],
                "read at {off}, {len} bytes"
            );
        }
        assert!(
            ok(s.read_snapshot_chunk(10_000, 10), "read").is_empty(),
            "at the end"
        );
        assert!(
            ok(s.read_snapshot_chunk(50_000, 10), "read").is_empty(),
            "past the end"
        );
        assert!(
            ok(s.read_snapshot_chunk(10, 0), "read").is_empty(),
            "zero length"
        );
        assert_eq!(read_all(&s, 4096), data, "sequential reads");
        assert_eq!(read_all(&s, 1 << 20), data, "one big read");
        let (s2, rec) = restart(s, reopen);
        s = s2;
        assert_eq!(rec.snapshot, Some(meta(5, 2)));
        check_log(&s, 6, 5, &[], "after reopen");
    }
}

fn large_snapshot_chunk<S: Storage>(fresh: Fresh<'_, S>, reopen: Reopen<'_, S>) {
    let mut s = fresh();
    write(&mut s, &[with_hs(PersistWrite::default(), hs(1, 0, 0))]);
    let data = pattern(5 << 20, 3);
    install(&mut s, meta(1, 1), &[&data[..3 << 20], &data[3 << 20..]]);
    let (s, _) = restart(s, reopen);
    for off in [0u64, (1 << 20) - 1, 1 << 20, (3 << 20) + 7] {
        let got = ok(s.read_snapshot_chunk(off, 3 << 20), "read");
        let end = (off as usize + (3 << 20)).min(data.len());
        assert_eq!(&got[..], &data[off as usize..end], "read at {off}");
    }
    assert_eq!(read_all(&s, 700_000), data);
}

fn snapshot_with_continuing_log<S: Storage>(fresh: Fresh<'_, S>, reopen: Reopen<'_, S>) {
    let mut s = fresh();
    let mut log = run(1, 5, 1);
    log.extend(run(6, 10, 2));
    write(&mut s, &[with_hs(append(log.clone()), hs(2, 1, 9))]);
    install(&mut s, meta(7, 2), &[b"state at 7"]);
    check_log(&s, 1, 10, &log, "the log is kept until compaction");
    let (mut s, rec) = restart(s, reopen);
    assert_eq!(rec.snapshot, Some(meta(7, 2)));
    assert_eq!(
        rec.entries, log,
        "recovery includes the entries the snapshot covers until compaction drops them"
    );
    ok(s.compact(7), "compact");
    check_log(&s, 8, 10, &log[7..], "after compaction");
    write(&mut s, &[append(run(11, 11, 2))]);
    assert_eq!(ok(s.last_index(), "last"), 11);
}

fn snapshot_with_non_continuing_log<S: Storage>(fresh: Fresh<'_, S>, reopen: Reopen<'_, S>) {
    let mut s = fresh();
    write(&mut s, &[with_hs(append(run(1, 10, 1)), hs(3, 0, 2))]);
    // Entry 6 has term 1, the snapshot says term 3: the log does not continue it.
    install(&mut s, meta(6, 3), &[b"state at 6"]);
    check_log(&s, 7, 6, &[], "the log is discarded");
    let (mut s, rec) = restart(s, reopen);
    assert_eq!(rec.snapshot, Some(meta(6, 3)));
    assert!(rec.entries.is_empty());
    check_log(&s, 7, 6, &[], "after reopen");
    refused(s.write(&[append(run(8, 8, 3))]), "gap after the snapshot");
    write(&mut s, &[append(run(7, 8, 3))]);
    check_log(&s, 7, 8, &run(7, 8, 3), "the log continues the snapshot");
}

fn snapshot_beyond_the_log<S: Storage>(fresh: Fresh<'_, S>, reopen: Reopen<'_, S>) {
    let mut s = fresh();
    write(&mut s, &[with_hs(append(run(1, 3, 1)), hs(2, 0, 3))]);
    install(&mut s, meta(20, 2), &[b"far ahead"]);
    check_log(&s, 21, 20, &[], "after the snapshot");
    let (mut s, rec) = restart(s, reopen);
    assert_eq!(rec.snapshot, Some(meta(20, 2)));
    check_log(&s, 21, 20, &[], "after reopen");
    write(&mut s, &[append(run(21, 21, 2))]);
    check_log(&s, 21, 21, &run(21, 21, 2), "appended after the snapshot");
}

fn snapshot_replaces_older_one<S: Storage>(fresh: Fresh<'_, S>, reopen: Reopen<'_, S>) {
    let mut s = fresh();
    write(&mut s, &[with_hs(PersistWrite::default(), hs(4, 0, 0))]);
    let old = pattern(3000, 7);
    install(&mut s, meta(5, 2), &[&old[..1500], &old[1500..]]);
    let new = pattern(1000, 8);
    install(&mut s, meta(9, 4), &[&new]);
    assert_eq!(ok(s.snapshot_meta(), "meta"), Some(meta(9, 4)));
    assert_eq!(read_all(&s, 256), new, "nothing of the old data shows");
    assert!(ok(s.read_snapshot_chunk(1000, 2000), "read").is_empty());
    let (s, rec) = restart(s, reopen);
    assert_eq!(rec.snapshot, Some(meta(9, 4)));
    assert_eq!(read_all(&s, 333), new);
}

fn restarted_snapshot_transfer<S: Storage>(fresh: Fresh<'_, S>, reopen: Reopen<'_, S>) {
    let mut s = fresh();
    write(&mut s, &[with_hs(PersistWrite::default(), hs(3, 0, 0))]);
    ok(s.begin_snapshot(meta(4, 2)), "begin");
    ok(s.write_snapshot_chunk(b"abandoned"), "chunk");
    install(&mut s, meta(6, 3), &[b"fresh ", b"start"]);
    assert_eq!(ok(s.snapshot_meta(), "meta"), Some(meta(6, 3)));
    assert_eq!(read_all(&s, 4), b"fresh start");
    let (s, _) = restart(s, reopen);
    assert_eq!(read_all(&s, 100), b"fresh start");
}

fn unfinished_snapshot_is_abandoned<S: Storage>(fresh: Fresh<'_, S>, reopen: Reopen<'_, S>) {
    let mut s = fresh();
    write(&mut s, &[with_hs(append(run(1, 4, 1)), hs(2, 0, 4))]);
    install(&mut s, meta(2, 1), &[b"old"]);
    ok(s.begin_snapshot(meta(4, 1)), "begin");
    ok(s.write_snapshot_chunk(b"half of the new"), "chunk");
    assert_eq!(ok(s.snapshot_meta(), "meta"), Some(meta(2, 1)));
    assert_eq!(
        read_all(&s, 2),
        b"old",
        "the current snapshot is served meanwhile"
    );
    let (mut s, rec) = restart(s, reopen);
    assert_eq!(rec.snapshot, Some(meta(2, 1)));
    assert_eq!(read_all(&s, 10), b"old");
    check_log(&s, 1, 4, &run(1, 4, 1), "the log is untouched");
    refused(s.write_snapshot_chunk(b"more"), "chunk after the restart");
    refused(s.finish_snapshot(), "finish after the restart");
    assert_eq!(ok(s.snapshot_meta(), "meta"), Some(meta(2, 1)));
    install(&mut s, meta(4, 1), &[b"new"]);
    assert_eq!(read_all(&s, 10), b"new");
}

fn snapshot_calls_out_of_order_are_refused<S: Storage>(fresh: Fresh<'_, S>, _: Reopen<'_, S>) {
    let mut s = fresh();
    refused(s.write_snapshot_chunk(b"x"), "chunk before begin");
    refused(s.finish_snapshot(), "finish before begin");
    write(&mut s, &[with_hs(PersistWrite::default(), hs(1, 0, 0))]);
    install(&mut s, meta(1, 1), &[b"x"]);
    refused(s.write_snapshot_chunk(b"y"), "chunk after finish");
    refused(s.finish_snapshot(), "finish twice");
    assert_eq!(read_all(&s, 10), b"x");
}

fn recovery_after_reopen<S: Storage>(fresh: Fresh<'_, S>, reopen: Reopen<'_, S>) {
    let mut s = fresh();
    write(&mut s, &[with_hs(append(run(1, 6, 1)), hs(1, 1, 3))]);
    write(&mut s, &[with_hs(cut(5, run(5, 8, 2)), hs(2, 2, 4))]);
    install(&mut s, meta(6, 2), &[b"six"]);
    ok(s.compact(5), "compact");
    write(&mut s, &[with_hs(append(run(9, 9, 2)), hs(2, 2, 9))]);
    // Entry 6 is the snapshot's last entry and was not compacted: recovery keeps it.
    let expected = RecoveredState {
        hard_state: hs(2, 2, 9),
        snapshot: Some(meta(6, 2)),
        entries: run(6, 9, 2),
    };
    let (s, rec) = restart(s, reopen);
    assert_eq!(rec, expected);
    check_log(&s, 6, 9, &run(6, 9, 2), "after the first reopen");
    let (mut s, rec) = restart(s, reopen);
    assert_eq!(rec, expected, "a second reopen recovers the same");
    assert_eq!(ok(s.recover(), "recover twice"), expected);
    assert_eq!(read_all(&s, 10), b"six");
}

#[cfg(test)]
mod tests {
    use crate::storage::MemStorage;

    #[test]
    fn mem_storage_passes_the_suite() {
        super::run_all(MemStorage::new, |s| s);
    }
}
