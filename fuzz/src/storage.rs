//! `storage_open` and `storage_corrupt`: opening damaged redb database files.

use std::path::PathBuf;
use std::sync::OnceLock;

use bytes::Bytes;
use raft_proto_core::storage::Storage;
use raft_proto_core::{Config, Entry, EntryKind, HardState, PersistWrite, RaftNode};
use raft_storage_redb::RedbStorage;

/// Cluster and node the fixed workload's database belongs to.
pub const CLUSTER_ID: u64 = 0xC1A5;
/// See [`CLUSTER_ID`].
pub const NODE_ID: u64 = 1;

/// A scratch directory of this process (one file is rewritten for every input).
fn scratch() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("raft-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        dir
    })
    .clone()
}

/// Builds a small valid database at `path` (which must not exist): two writes of log entries,
/// a hard state, and a truncation.
pub fn build_valid(path: &std::path::Path) {
    let mut s = RedbStorage::create(path, CLUSTER_ID, NODE_ID).expect("create");
    let entry = |term, index, data: &'static [u8]| Entry {
        term,
        index,
        kind: if data.is_empty() {
            EntryKind::Noop
        } else {
            EntryKind::Normal
        },
        data: Bytes::from_static(data),
    };
    let w1 = PersistWrite {
        seq: 1,
        truncate_from: None,
        entries: vec![
            entry(1, 1, b""),
            entry(1, 2, b"put a=1"),
            entry(1, 3, b"put b=2"),
        ],
        hard_state: Some(HardState {
            term: 1,
            vote: 1,
            commit: 2,
        }),
    };
    let w2 = PersistWrite {
        seq: 2,
        truncate_from: Some(3),
        entries: vec![entry(2, 3, b""), entry(2, 4, b"cas a 1->3")],
        hard_state: Some(HardState {
            term: 2,
            vote: 2,
            commit: 4,
        }),
    };
    s.write(&[w1]).expect("write 1");
    s.write(&[w2]).expect("write 2");
    s.close().expect("close");
}

/// The bytes of the database [`build_valid`] makes (built once per process).
pub fn valid_db() -> &'static [u8] {
    static DB: OnceLock<Vec<u8>> = OnceLock::new();
    DB.get_or_init(|| {
        let path = scratch().join("valid.redb");
        let _ = std::fs::remove_file(&path);
        build_valid(&path);
        let bytes = std::fs::read(&path).expect("read valid db");
        let _ = std::fs::remove_file(&path);
        bytes
    })
}

/// Writes `file` as a database, opens it and recovers: any error is fine, a panic is not, and
/// a recovered state must be one a node starts from.
fn open_file(file: &[u8]) {
    let path = scratch().join("input.redb");
    let _ = std::fs::remove_file(&path);
    std::fs::write(&path, file).expect("write input file");
    if let Ok(mut storage) = RedbStorage::open(&path, CLUSTER_ID, NODE_ID) {
        if let Ok(state) = storage.recover() {
            let config = Config::new(NODE_ID, vec![NODE_ID, 2, 3]);
            if let Err(e) = RaftNode::new(config, state) {
                panic!("recover() returned a state the core refuses: {e}");
            }
        }
        let _ = storage.close();
    }
}

/// libfuzzer-sys installs a panic hook that aborts at once, which would also turn panics the
/// backend catches on purpose (redb failing on a damaged file) into reported crashes. Restore
/// the default hook: a panic that escapes is still caught by the fuzz harness and aborts.
fn let_caught_panics_be_caught() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| drop(std::panic::take_hook()));
}

/// `storage_open`: the input is the whole file.
pub fn open_bytes(data: &[u8]) {
    let_caught_panics_be_caught();
    open_file(data);
}

/// `storage_corrupt`: the input is up to 16 patches of 5 bytes each, `(offset: u32 LE, byte)`,
/// applied to the valid database; offsets wrap around the file size.
pub fn corrupt(data: &[u8]) {
    let_caught_panics_be_caught();
    let mut file = valid_db().to_vec();
    for patch in data.chunks_exact(5).take(16) {
        let off = u32::from_le_bytes(patch[..4].try_into().expect("4 bytes")) as usize;
        let len = file.len();
        file[off % len] = patch[4];
    }
    open_file(&file);
}
