//! Helpers for tests that build stores and tamper with their files.
//!
//! The table definitions repeat the documented on-disk layout (`src/db.rs`) on purpose: a change
//! of layout that forgets to bump the format version breaks these tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use bytes::Bytes;
use raft_proto_core::storage::Storage;
use raft_proto_core::{Entry, EntryKind, HardState, PersistWrite, SnapshotMeta};
use raft_storage_redb::{RedbStorage, RedbStorageError};
use redb::TableDefinition;

pub const IDENTITY: TableDefinition<&str, u64> = TableDefinition::new("raft_identity");
pub const STATE: TableDefinition<&str, u64> = TableDefinition::new("raft_state");
pub const SNAPSHOT: TableDefinition<&str, (u64, u64, u64, u64)> =
    TableDefinition::new("raft_snapshot");
pub const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
pub const SNAPSHOT_DATA: TableDefinition<(u64, u64), &[u8]> =
    TableDefinition::new("raft_snapshot_data");

pub const CLUSTER: u64 = 77;
pub const NODE: u64 = 2;

pub fn entry(index: u64, term: u64) -> Entry {
    Entry {
        term,
        index,
        kind: EntryKind::Normal,
        data: Bytes::from(vec![index as u8; 100]),
    }
}

/// A store with a snapshot at 500 (200 KB of data), entries 401..=1000 and hard state
/// (term 2, vote 1, commit 900), closed.
pub fn sample_store(dir: &Path) -> PathBuf {
    let path = dir.join("sample.redb");
    let mut s = RedbStorage::create(&path, CLUSTER, NODE).expect("create");
    for b in 0..50u64 {
        let term = if b < 25 { 1 } else { 2 };
        let entries = (1..=20).map(|i| entry(b * 20 + i, term)).collect();
        let hard_state = Some(HardState {
            term,
            vote: 1,
            commit: b * 20,
        });
        let w = PersistWrite {
            seq: b,
            entries,
            hard_state,
            ..PersistWrite::default()
        };
        s.write(&[w]).expect("write");
    }
    let hs = HardState {
        term: 2,
        vote: 1,
        commit: 900,
    };
    s.write(&[PersistWrite {
        hard_state: Some(hs),
        ..PersistWrite::default()
    }])
    .expect("write");
    s.begin_snapshot(SnapshotMeta {
        last_index: 500,
        last_term: 1,
        membership: raft_proto_core::Membership::with_voters([1, 2, 3]).into(),
    })
    .expect("begin");
    for _ in 0..4 {
        s.write_snapshot_chunk(&[7u8; 50_000]).expect("chunk");
    }
    s.finish_snapshot().expect("finish");
    s.compact(400).expect("compact");
    s.close().expect("close");
    path
}

/// Changes the file with redb directly, in one transaction.
pub fn tamper(path: &Path, f: impl FnOnce(&redb::WriteTransaction)) {
    let db = redb::Database::open(path).expect("open with redb");
    let txn = db.begin_write().expect("begin");
    f(&txn);
    txn.commit().expect("commit");
}

pub fn set_u64(path: &Path, table: TableDefinition<&str, u64>, key: &str, value: u64) {
    tamper(path, |txn| {
        let mut t = txn.open_table(table).expect("table");
        t.insert(key, value).expect("insert");
    });
}

/// Reads a stored log value.
pub fn log_value(path: &Path, index: u64) -> Vec<u8> {
    let db = redb::Database::open(path).expect("open with redb");
    let txn = redb::ReadableDatabase::begin_read(&db).expect("begin");
    let t = txn.open_table(LOG).expect("table");
    let v = t.get(index).expect("get").expect("present");
    v.value().to_vec()
}

/// Asserts that the error's message names the file.
pub fn names_file(e: &RedbStorageError, path: &Path) {
    let msg = e.to_string();
    assert!(
        msg.contains(&path.display().to_string()),
        "the error does not name {}: {msg}",
        path.display()
    );
}
