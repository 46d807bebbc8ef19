//! Files that must not be opened as this node's storage, and stored state that must not be
//! recovered: each gives a typed error naming the file, never a panic, and changes no data.

mod common;

use std::path::Path;

use common::*;
use raft_proto_core::storage::Storage;
use raft_proto_core::RecoveryError;
use raft_storage_redb::{Inconsistency, RedbStorage, RedbStorageError, FORMAT_VERSION};
use redb::ReadableTable;

fn open_err(path: &Path, cluster: u64, node: u64) -> RedbStorageError {
    let e = RedbStorage::open(path, cluster, node).expect_err("the open must fail");
    names_file(&e, path);
    e
}

/// The store at `path` still opens and recovers the sample's state.
fn still_intact(path: &Path) {
    let mut s = RedbStorage::open(path, CLUSTER, NODE).expect("reopen");
    let rec = s.recover().expect("recover");
    // Entries 401..=1000: compacted through 400, the tail the snapshot at 500 covers kept.
    assert_eq!(rec.entries.len(), 600);
    assert_eq!(rec.hard_state.commit, 900);
    assert_eq!(rec.snapshot.map(|m| m.last_index), Some(500));
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("absent.redb");
    assert!(matches!(
        open_err(&path, 1, 1),
        RedbStorageError::NotFound { .. }
    ));
    assert!(!path.exists(), "open never creates");
}

#[test]
fn create_over_an_existing_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "keep me\n").expect("write");
    let e = RedbStorage::create(&text, 1, 1).expect_err("create must refuse");
    names_file(&e, &text);
    assert!(matches!(e, RedbStorageError::AlreadyExists { .. }), "{e:?}");
    assert_eq!(std::fs::read(&text).expect("read"), b"keep me\n");
    let db = sample_store(dir.path());
    let e = RedbStorage::create(&db, CLUSTER, NODE).expect_err("create must refuse");
    assert!(matches!(e, RedbStorageError::AlreadyExists { .. }), "{e:?}");
    still_intact(&db);
}

#[test]
fn leftover_of_an_interrupted_create_is_replaced() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("node.redb");
    std::fs::write(dir.path().join("node.redb.creating"), b"half made").expect("write");
    let s = RedbStorage::open_or_create(&path, 1, 1).expect("create");
    drop(s);
    assert!(!dir.path().join("node.redb.creating").exists());
    RedbStorage::open(&path, 1, 1).expect("open");
}

#[test]
fn wrong_cluster_and_wrong_node() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = sample_store(dir.path());
    match open_err(&path, CLUSTER + 1, NODE) {
        RedbStorageError::WrongCluster {
            expected, found, ..
        } => assert_eq!((expected, found), (CLUSTER + 1, CLUSTER)),
        e => panic!("unexpected {e:?}"),
    }
    match open_err(&path, CLUSTER, NODE + 1) {
        RedbStorageError::WrongNode {
            expected, found, ..
        } => assert_eq!((expected, found), (NODE + 1, NODE)),
        e => panic!("unexpected {e:?}"),
    }
    let e = RedbStorage::open_or_create(&path, CLUSTER, NODE + 1).expect_err("refused");
    assert!(matches!(e, RedbStorageError::WrongNode { .. }), "{e:?}");
    still_intact(&path);
}

#[test]
fn newer_and_unknown_format_versions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = sample_store(dir.path());
    set_u64(&path, IDENTITY, "format_version", FORMAT_VERSION + 1);
    match open_err(&path, CLUSTER, NODE) {
        RedbStorageError::NewerFormat {
            found, supported, ..
        } => assert_eq!((found, supported), (FORMAT_VERSION + 1, FORMAT_VERSION)),
        e => panic!("unexpected {e:?}"),
    }
    set_u64(&path, IDENTITY, "format_version", 0);
    assert!(matches!(
        open_err(&path, CLUSTER, NODE),
        RedbStorageError::UnknownFormat { found: 0, .. }
    ));
    set_u64(&path, IDENTITY, "format_version", FORMAT_VERSION);
    still_intact(&path);
}

#[test]
fn files_that_are_not_redb_databases() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rng = fastrand::Rng::with_seed(3);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("one byte", vec![0]),
        (
            "text",
            b"[server]\nport = 8080\n# not a database\n".to_vec(),
        ),
        ("random 4 KiB", (0..4096).map(|_| rng.u8(..)).collect()),
        ("random 1 MiB", (0..1 << 20).map(|_| rng.u8(..)).collect()),
        ("zeros 64 KiB", vec![0; 64 << 10]),
    ];
    for (name, bytes) in cases {
        let path = dir.path().join(format!("{name}.redb"));
        std::fs::write(&path, &bytes).expect("write");
        for open in [RedbStorage::open, RedbStorage::open_or_create] {
            let e = open(&path, 1, 1).expect_err(name);
            names_file(&e, &path);
            assert!(
                matches!(e, RedbStorageError::NotRedb { .. }),
                "{name}: {e:?}"
            );
            assert_eq!(
                std::fs::read(&path).expect("read"),
                bytes,
                "{name}: file changed"
            );
        }
    }
}

#[test]
fn redb_database_of_something_else() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("other.redb");
    {
        let db = redb::Database::create(&path).expect("create");
        let txn = db.begin_write().expect("begin");
        {
            let t: redb::TableDefinition<&str, &str> = redb::TableDefinition::new("users");
            txn.open_table(t)
                .expect("table")
                .insert("ann", "admin")
                .expect("insert");
        }
        txn.commit().expect("commit");
    }
    assert!(matches!(
        open_err(&path, 1, 1),
        RedbStorageError::NotRaftStorage { .. }
    ));
    // An identity table with the wrong types, or without a format version.
    tamper(&path, |txn| {
        let t: redb::TableDefinition<&str, &str> = redb::TableDefinition::new("raft_identity");
        txn.open_table(t)
            .expect("table")
            .insert("format_version", "one")
            .expect("insert");
    });
    assert!(matches!(
        open_err(&path, 1, 1),
        RedbStorageError::NotRaftStorage { .. }
    ));
    let path = sample_store(dir.path());
    tamper(&path, |txn| {
        let mut t = txn.open_table(IDENTITY).expect("table");
        t.remove("format_version").expect("remove");
    });
    assert!(matches!(
        open_err(&path, CLUSTER, NODE),
        RedbStorageError::NotRaftStorage { .. }
    ));
}

#[test]
fn second_open_while_open_is_locked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = sample_store(dir.path());
    let first = RedbStorage::open(&path, CLUSTER, NODE).expect("open");
    assert!(matches!(
        open_err(&path, CLUSTER, NODE),
        RedbStorageError::Locked { .. }
    ));
    drop(first);
    still_intact(&path);
}

/// What opening and recovering a damaged copy gave.
#[derive(Debug, Default)]
struct Outcomes {
    refused_on_open: usize,
    refused_on_recover: usize,
    recovered: usize,
    /// Recovered, but not the state before the damage.
    changed: usize,
}

fn try_damaged(path: &Path, out: &mut Outcomes, intact: &raft_proto_core::RecoveredState) {
    let mut s = match RedbStorage::open(path, CLUSTER, NODE) {
        Ok(s) => s,
        Err(e) => {
            names_file(&e, path);
            out.refused_on_open += 1;
            return;
        }
    };
    match s.recover() {
        Ok(rec) => {
            rec.validate()
                .expect("a recovered damaged file still validates");
            if &rec != intact {
                out.changed += 1;
            }
            // Reading everything must not panic either.
            let _ = s.entries(0, u64::MAX);
            let _ = s.read_snapshot_chunk(0, 1 << 20);
            out.recovered += 1;
        }
        Err(e) => {
            names_file(&e, path);
            out.refused_on_recover += 1;
        }
    }
}

#[test]
fn damaged_files_give_errors_or_valid_states_never_panics() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sample = sample_store(dir.path());
    let original = std::fs::read(&sample).expect("read");
    let intact = RedbStorage::open(&sample, CLUSTER, NODE)
        .expect("open")
        .recover()
        .expect("recover");
    let path = dir.path().join("damaged.redb");
    let mut truncated = Outcomes::default();
    for len in [
        1,
        100,
        511,
        4096,
        4097,
        original.len() / 3,
        original.len() / 2,
        original.len() - 1,
    ] {
        std::fs::write(&path, &original[..len]).expect("write");
        try_damaged(&path, &mut truncated, &intact);
    }
    assert_eq!(
        truncated.refused_on_open, 8,
        "every truncation is refused: {truncated:?}"
    );
    let mut overwritten = Outcomes::default();
    let mut rng = fastrand::Rng::with_seed(11);
    for i in 0..300 {
        let mut bytes = original.clone();
        let at = if i < 100 {
            i * bytes.len() / 100
        } else {
            rng.usize(..bytes.len())
        };
        let n = [1, 16, 4096][i % 3];
        for b in bytes.iter_mut().skip(at).take(n) {
            *b ^= rng.u8(1..);
        }
        std::fs::write(&path, &bytes).expect("write");
        try_damaged(&path, &mut overwritten, &intact);
    }
    eprintln!("truncated: {truncated:?}; overwritten: {overwritten:?}");
    assert!(
        overwritten.refused_on_open > 0,
        "some damage must be detected"
    );
    // Observed with redb 4.6: damage is either detected or lands where no live data is (freed
    // pages); no damaged copy recovered a different state.
    assert_eq!(
        truncated.changed + overwritten.changed,
        0,
        "a damaged copy recovered other data"
    );
}

#[test]
fn inconsistent_stored_state_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = std::fs::read(sample_store(dir.path())).expect("read");
    let path = dir.path().join("case.redb");
    let reset = || std::fs::write(&path, &base).expect("write");
    let inconsistent = |e: RedbStorageError| match e {
        RedbStorageError::Inconsistent { source, .. } => source,
        e => panic!("expected Inconsistent, got {e:?}"),
    };
    let on_open = |what: &str| inconsistent(open_err(&path, CLUSTER, NODE)).to_string() + what;
    let on_recover = || {
        let mut s = RedbStorage::open(&path, CLUSTER, NODE).expect("open");
        let e = s.recover().expect_err("recover must fail");
        names_file(&e, &path);
        inconsistent(e)
    };

    // A hole in the log.
    reset();
    tamper(&path, |txn| {
        txn.open_table(LOG).expect("t").remove(700).expect("remove");
    });
    assert!(on_open("").contains("holds 599 entries"));
    // The first entry missing.
    reset();
    tamper(&path, |txn| {
        txn.open_table(LOG).expect("t").remove(401).expect("remove");
    });
    assert!(on_open("").contains("starts at 402"));
    // A missing record.
    reset();
    tamper(&path, |txn| {
        txn.open_table(STATE)
            .expect("t")
            .remove("commit")
            .expect("remove");
    });
    assert!(on_open("").contains("\"commit\""));
    // A missing table.
    reset();
    tamper(&path, |txn| {
        txn.delete_table(LOG).expect("delete");
    });
    assert!(on_open("").contains("raft_log"));
    // Compacted past the snapshot.
    reset();
    set_u64(&path, STATE, "log_floor", 600);
    on_open("");
    // Indexes and ids out of range.
    for record in [(1, u64::MAX, 1, 0), (u64::MAX, 500, 1, 200_000)] {
        reset();
        tamper(&path, |txn| {
            let mut t = txn.open_table(SNAPSHOT).expect("t");
            t.insert("current", record).expect("insert");
        });
        on_open("");
    }
    // Snapshot data shorter than recorded.
    reset();
    tamper(&path, |txn| {
        let mut t = txn.open_table(SNAPSHOT).expect("t");
        let (id, li, lt, len) = t.get("current").expect("get").expect("some").value();
        t.insert("current", (id, li, lt, len + 1)).expect("insert");
    });
    assert!(matches!(
        on_recover_or_open(&path),
        Inconsistency::SnapshotLength { .. }
    ));
    // An entry that does not decode.
    for bad in [vec![1, 2, 3], {
        let mut v = log_value(&path, 800);
        v[8] = 9;
        v
    }] {
        reset();
        tamper(&path, |txn| {
            txn.open_table(LOG)
                .expect("t")
                .insert(800, bad.as_slice())
                .expect("insert");
        });
        assert_eq!(on_recover(), Inconsistency::BadEntry { index: 800 });
    }
    // A commit index past the log.
    reset();
    set_u64(&path, STATE, "commit", 5000);
    assert!(matches!(
        on_recover(),
        Inconsistency::Recovery(RecoveryError::CommitBeyondLog { .. })
    ));
    // Entries above the hard state's term.
    reset();
    set_u64(&path, STATE, "term", 1);
    assert!(matches!(
        on_recover(),
        Inconsistency::Recovery(RecoveryError::TermAboveHardState { .. })
    ));
    // Terms that go down.
    reset();
    let mut v = log_value(&path, 999);
    v[..8].copy_from_slice(&5u64.to_le_bytes());
    tamper(&path, |txn| {
        txn.open_table(LOG)
            .expect("t")
            .insert(999, v.as_slice())
            .expect("insert");
    });
    set_u64(&path, STATE, "term", 5);
    assert!(matches!(
        on_recover(),
        Inconsistency::Recovery(RecoveryError::TermDecreases { index: 1000 })
    ));
}

fn on_recover_or_open(path: &Path) -> Inconsistency {
    let e = match RedbStorage::open(path, CLUSTER, NODE) {
        Err(e) => e,
        Ok(mut s) => s.recover().expect_err("recover must fail"),
    };
    names_file(&e, path);
    match e {
        RedbStorageError::Inconsistent { source, .. } => source,
        e => panic!("expected Inconsistent, got {e:?}"),
    }
}

#[test]
fn snapshot_index_out_of_range_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = sample_store(dir.path());
    let mut s = RedbStorage::open(&path, CLUSTER, NODE).expect("open");
    let meta = raft_proto_core::SnapshotMeta {
        last_index: raft_proto_core::MAX_INDEX + 1,
        last_term: 1,
        ..raft_proto_core::SnapshotMeta::default()
    };
    let e = s.begin_snapshot(meta).expect_err("refused");
    names_file(&e, &path);
    assert!(matches!(e, RedbStorageError::Rejected { .. }), "{e:?}");
    s.write_snapshot_chunk(b"x").expect_err("nothing begun");
    drop(s);
    still_intact(&path);
}

/// Found by the `storage_open` fuzz target: these bytes made redb 4.6 panic inside its repair on
/// open (an assertion in its page store). The file must give a typed error naming it.
#[test]
fn file_that_makes_redb_panic_on_open_is_a_typed_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("fuzzed.redb");
    std::fs::write(&path, include_bytes!("redb_panic_on_open.bin")).expect("write");
    let err = match RedbStorage::open(&path, 1, 1) {
        Ok(_) => panic!("a damaged file opened"),
        Err(e) => e,
    };
    assert!(
        matches!(
            err,
            RedbStorageError::Damaged { .. } | RedbStorageError::NotRedb { .. }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("fuzzed.redb"), "{err}");
}
