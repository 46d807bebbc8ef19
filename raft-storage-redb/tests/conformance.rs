//! The core's storage conformance suite, run against the redb backend with real reopens.

use raft_proto_core::storage::conformance;
use raft_storage_redb::RedbStorage;

#[test]
fn redb_storage_passes_the_conformance_suite() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let mut n = 0;
    conformance::run_all(
        || {
            n += 1;
            let path = dir.path().join(format!("case-{n}.redb"));
            RedbStorage::create(path, 7, 1).expect("create")
        },
        |s| {
            let path = s.path().to_path_buf();
            s.close().expect("close");
            RedbStorage::open(path, 7, 1).expect("reopen")
        },
    );
}

#[test]
fn redb_storage_passes_the_suite_when_dropped_without_close() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let mut n = 0;
    conformance::run_all(
        || {
            n += 1;
            let path = dir.path().join(format!("case-{n}.redb"));
            RedbStorage::create(path, 7, 1).expect("create")
        },
        |s| {
            let path = s.path().to_path_buf();
            drop(s);
            RedbStorage::open(path, 7, 1).expect("reopen")
        },
    );
}
