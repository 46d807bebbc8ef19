//! What the trait cannot observe: commits per call, the stored entry layout, and that replaced
//! or abandoned snapshot data does not stay in the file.

mod common;

use std::path::Path;

use bytes::Bytes;
use common::*;
use raft_proto_core::storage::Storage;
use raft_proto_core::{Entry, EntryKind, HardState, PersistWrite, SnapshotMeta};
use raft_storage_redb::RedbStorage;
use redb::{ReadableDatabase, ReadableTableMetadata};

fn append(first: u64, n: u64) -> PersistWrite {
    PersistWrite {
        entries: (first..first + n).map(|i| entry(i, 1)).collect(),
        ..PersistWrite::default()
    }
}

fn hs(term: u64, commit: u64) -> PersistWrite {
    PersistWrite {
        hard_state: Some(HardState {
            term,
            vote: 1,
            commit,
        }),
        ..PersistWrite::default()
    }
}

fn meta(last_index: u64) -> SnapshotMeta {
    SnapshotMeta {
        last_index,
        last_term: 1,
        membership: raft_proto_core::Membership::with_voters([1, 2, 3]).into(),
    }
}

#[test]
fn one_durable_commit_per_write_call() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut s = RedbStorage::create(dir.path().join("c.redb"), 1, 1).expect("create");
    let commits = |s: &RedbStorage| s.durable_commits();
    assert_eq!(commits(&s), 0);
    s.write(&[hs(1, 0), append(1, 10), append(11, 5), hs(1, 3)])
        .expect("write");
    assert_eq!(commits(&s), 1, "four writes in one call: one commit");
    s.write(&[append(16, 1), append(40, 1)]).expect_err("gap");
    assert_eq!(commits(&s), 1, "a refused call commits nothing");
    s.write(&[]).expect("empty");
    s.write(&[PersistWrite::default()]).expect("idle");
    assert_eq!(commits(&s), 1, "nothing to write: no commit");
    s.begin_snapshot(meta(8)).expect("begin");
    s.write_snapshot_chunk(&[1; 3000]).expect("chunk");
    assert_eq!(commits(&s), 1, "snapshot data is not synced chunk by chunk");
    s.finish_snapshot().expect("finish");
    assert_eq!(commits(&s), 2, "finishing the snapshot: one commit");
    s.compact(8).expect("compact");
    s.compact(8).expect("no-op compact");
    assert_eq!(
        commits(&s),
        3,
        "one commit per compaction that drops entries"
    );
}

#[test]
fn entries_are_stored_as_header_and_verbatim_payload() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("e.redb");
    let mut s = RedbStorage::create(&path, 1, 1).expect("create");
    let e = Entry {
        term: 0x0102_0304,
        index: 1,
        kind: EntryKind::Noop,
        data: Bytes::from_static(b"payload bytes"),
    };
    s.write(&[PersistWrite {
        entries: vec![e],
        ..hs(0x0102_0304, 0)
    }])
    .expect("write");
    drop(s);
    let mut expected = 0x0102_0304u64.to_le_bytes().to_vec();
    expected.push(1);
    expected.extend_from_slice(b"payload bytes");
    assert_eq!(log_value(&path, 1), expected);
}

fn pieces(path: &Path) -> u64 {
    let db = redb::Database::open(path).expect("open with redb");
    let txn = db.begin_read().expect("begin");
    txn.open_table(SNAPSHOT_DATA)
        .expect("table")
        .len()
        .expect("len")
}

#[test]
fn replaced_and_abandoned_snapshot_data_is_deleted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("s.redb");
    let open = || RedbStorage::open_or_create(&path, 1, 1).expect("open");
    let mut s = open();
    s.write(&[hs(1, 0)]).expect("write");
    let install = |s: &mut RedbStorage, at: u64, len: usize| {
        s.begin_snapshot(meta(at)).expect("begin");
        s.write_snapshot_chunk(&vec![at as u8; len]).expect("chunk");
        s.finish_snapshot().expect("finish");
    };
    install(&mut s, 1, 3 << 20);
    drop(s);
    assert_eq!(pieces(&path), 3, "3 MiB in 1 MiB pieces");
    let mut s = open();
    install(&mut s, 2, (1 << 20) + 1);
    drop(s);
    assert_eq!(pieces(&path), 2, "the replaced snapshot's data is gone");
    let mut s = open();
    s.begin_snapshot(meta(3)).expect("begin");
    s.write_snapshot_chunk(&[3; 100]).expect("chunk");
    s.finish_snapshot().expect("finish");
    s.begin_snapshot(meta(4)).expect("begin");
    s.write_snapshot_chunk(&[4; 100]).expect("chunk");
    s.close().expect("close");
    assert_eq!(pieces(&path), 2, "one piece each: current and abandoned");
    let mut s = open();
    s.recover().expect("recover");
    s.begin_snapshot(meta(5)).expect("begin");
    drop(s);
    assert_eq!(
        pieces(&path),
        1,
        "the next transfer clears the abandoned one"
    );
}
