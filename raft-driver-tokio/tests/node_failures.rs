//! A node whose storage backend or state machine fails stops with an error instead of
//! staying up as a leader that can never answer.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use bytes::Bytes;
use raft_driver_tokio::protocol::ClientResponse;
use raft_driver_tokio::state_machine::{RestoreError, SnapshotSource};
use raft_driver_tokio::tls::{self, Identity, TlsFiles};
use raft_driver_tokio::{Node, NodeError, NodeOptions, StateMachine};
use raft_proto_core::storage::{MemStorage, MemStorageError, Storage};
use raft_proto_core::{Entry, HardState, Index, PersistWrite, RecoveredState, SnapshotMeta};

/// MemStorage that panics (or fails) on its `fail_at`-th write.
struct Faulty {
    inner: MemStorage,
    writes: usize,
    fail_at: usize,
    panic: bool,
}

impl Storage for Faulty {
    type Error = MemStorageError;
    fn recover(&mut self) -> Result<RecoveredState, Self::Error> {
        self.inner.recover()
    }
    fn write(&mut self, writes: &[PersistWrite]) -> Result<(), Self::Error> {
        self.writes += 1;
        if self.writes == self.fail_at {
            if self.panic {
                panic!("disk on fire");
            }
            return Err(MemStorageError::NoSnapshotInProgress);
        }
        self.inner.write(writes)
    }
    fn entries(&self, lo: Index, hi: Index) -> Result<Vec<Entry>, Self::Error> {
        self.inner.entries(lo, hi)
    }
    fn first_index(&self) -> Result<Index, Self::Error> {
        self.inner.first_index()
    }
    fn last_index(&self) -> Result<Index, Self::Error> {
        self.inner.last_index()
    }
    fn hard_state(&self) -> Result<HardState, Self::Error> {
        self.inner.hard_state()
    }
    fn compact(&mut self, through: Index) -> Result<(), Self::Error> {
        self.inner.compact(through)
    }
    fn begin_snapshot(&mut self, meta: SnapshotMeta) -> Result<(), Self::Error> {
        self.inner.begin_snapshot(meta)
    }
    fn write_snapshot_chunk(&mut self, chunk: &[u8]) -> Result<(), Self::Error> {
        self.inner.write_snapshot_chunk(chunk)
    }
    fn finish_snapshot(&mut self) -> Result<(), Self::Error> {
        self.inner.finish_snapshot()
    }
    fn snapshot_meta(&self) -> Result<Option<SnapshotMeta>, Self::Error> {
        self.inner.snapshot_meta()
    }
    fn read_snapshot_chunk(&self, offset: u64, max_len: usize) -> Result<Bytes, Self::Error> {
        self.inner.read_snapshot_chunk(offset, max_len)
    }
    fn snapshot_len(&self) -> Result<u64, Self::Error> {
        self.inner.snapshot_len()
    }
}

/// Echoes commands, and panics on the command `boom`. It has no state: its snapshot is empty.
struct Echo;
impl StateMachine for Echo {
    fn apply(&mut self, _index: Index, command: &Bytes) -> Bytes {
        assert_ne!(&command[..], b"boom", "state machine bug");
        command.clone()
    }
    fn snapshot(&mut self) -> Box<dyn SnapshotSource> {
        Box::new(Empty)
    }
    fn restore(&mut self, _data: &mut dyn std::io::Read) -> Result<(), RestoreError> {
        Ok(())
    }
}

struct Empty;
impl SnapshotSource for Empty {
    fn write_chunk(&mut self, _out: &mut Vec<u8>, _max: usize) -> Result<bool, std::io::Error> {
        Ok(false)
    }
}

fn options(dir: &std::path::Path) -> NodeOptions {
    tls::write_cluster_certs(dir, "failures", &[1], &[]).unwrap();
    let identity = Identity::load(&TlsFiles::for_node(dir, 1)).unwrap();
    let addr: SocketAddr = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut o = NodeOptions::new(1, 5, BTreeMap::from([(1, addr)]), identity);
    o.tick = Duration::from_millis(10);
    o
}

async fn storage_failure_stops_the_node(panic: bool) {
    let dir = tempfile::tempdir().unwrap();
    let storage = Faulty {
        inner: MemStorage::default(),
        writes: 0,
        fail_at: 4,
        panic,
    };
    let mut node = Node::builder(options(dir.path()))
        .storage(storage)
        .state_machine(Echo)
        .start()
        .await
        .unwrap();
    let handle = node.handle();
    tokio::spawn(async move {
        for i in 0..200u8 {
            if let ClientResponse::NotLeader { .. } = handle.propose(Bytes::from(vec![i])).await {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let err = tokio::time::timeout(Duration::from_secs(20), node.stopped())
        .await
        .expect("the node must stop by itself");
    assert!(matches!(err, NodeError::Storage(_)), "{err}");
    // The failure was reported by `stopped`; shutting down still releases everything.
    tokio::time::timeout(Duration::from_secs(10), node.shutdown())
        .await
        .expect("shutdown after a failure completes")
        .ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_error_stops_the_node() {
    storage_failure_stops_the_node(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_panic_stops_the_node() {
    storage_failure_stops_the_node(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_machine_panic_stops_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::builder(options(dir.path()))
        .storage(MemStorage::default())
        .state_machine(Echo)
        .start()
        .await
        .unwrap();
    let handle = node.handle();
    let ok = loop {
        match handle.propose(Bytes::from_static(b"fine")).await {
            ClientResponse::Applied { response, .. } => break response,
            ClientResponse::NotLeader { .. } => tokio::time::sleep(Duration::from_millis(20)).await,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(&ok[..], b"fine");
    let h = handle.clone();
    tokio::spawn(async move {
        h.propose(Bytes::from_static(b"boom")).await;
        for _ in 0..10 {
            h.propose(Bytes::from_static(b"after")).await;
        }
    });
    let err = tokio::time::timeout(Duration::from_secs(20), node.stopped())
        .await
        .expect("the node must stop by itself");
    assert!(matches!(err, NodeError::Task(_)), "{err}");
}
