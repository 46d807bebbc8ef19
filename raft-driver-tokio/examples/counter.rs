//! A different state machine on the same driver: a replicated counter.
//!
//! Three nodes run in this one process (each with its own QUIC endpoint on loopback and an
//! in-memory log), and a client adds to the counter through the network. The state machine
//! keeps each client's last sequence number so that a retried command is applied once.
//!
//! Run with `cargo run -p raft-driver-tokio --example counter`.

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, UdpSocket};

use bytes::{BufMut, Bytes, BytesMut};
use raft_driver_tokio::state_machine::{RestoreError, SnapshotSource};
use raft_driver_tokio::tls::{self, Identity, TlsFiles};
use raft_driver_tokio::{Client, ClientOptions, Node, NodeOptions, StateMachine};
use raft_proto_core::storage::MemStorage;
use raft_proto_core::Index;

/// The counter, with the last answer per client for duplicate detection.
#[derive(Default)]
struct Counter {
    value: i64,
    sessions: HashMap<u64, (u64, i64)>,
}

/// A command: client id, sequence number, amount to add (24 bytes, little endian).
fn add(client: u64, seq: u64, delta: i64) -> Bytes {
    let mut b = BytesMut::with_capacity(24);
    b.put_u64_le(client);
    b.put_u64_le(seq);
    b.put_i64_le(delta);
    b.freeze()
}

impl StateMachine for Counter {
    fn apply(&mut self, _index: Index, command: &Bytes) -> Bytes {
        let field = |i: usize| {
            command
                .get(i * 8..i * 8 + 8)
                .and_then(|s| s.try_into().ok())
        };
        let (Some(client), Some(seq), Some(delta)) = (field(0), field(1), field(2)) else {
            return Bytes::from_static(b"malformed command");
        };
        let (client, seq, delta) = (
            u64::from_le_bytes(client),
            u64::from_le_bytes(seq),
            i64::from_le_bytes(delta),
        );
        let value = match self.sessions.get(&client) {
            Some(&(last, answer)) if seq <= last => answer,
            _ => {
                self.value = self.value.wrapping_add(delta);
                self.sessions.insert(client, (seq, self.value));
                self.value
            }
        };
        Bytes::from(value.to_string())
    }

    /// The snapshot: the value, then each session (client, seq, answer), sorted by client so
    /// that replicas write the same bytes; 8 bytes little endian each.
    fn snapshot(&mut self) -> Box<dyn SnapshotSource> {
        let mut state = Vec::with_capacity(8 + 24 * self.sessions.len());
        state.put_i64_le(self.value);
        let sessions: BTreeMap<_, _> = self.sessions.iter().collect();
        for (client, (seq, answer)) in sessions {
            state.put_u64_le(*client);
            state.put_u64_le(*seq);
            state.put_i64_le(*answer);
        }
        Box::new(Whole(Some(state)))
    }

    fn restore(&mut self, data: &mut dyn std::io::Read) -> Result<(), RestoreError> {
        let mut state = Vec::new();
        data.read_to_end(&mut state)
            .map_err(|e| RestoreError(e.to_string()))?;
        if state.len() % 8 != 0 || (state.len() / 8) % 3 != 1 {
            return Err(RestoreError(format!(
                "{} bytes is no counter snapshot",
                state.len()
            )));
        }
        let word =
            |i: usize| u64::from_le_bytes(state[i * 8..i * 8 + 8].try_into().unwrap_or_default());
        self.value = word(0) as i64;
        self.sessions = (0..(state.len() / 8 - 1) / 3)
            .map(|k| (word(1 + 3 * k), (word(2 + 3 * k), word(3 + 3 * k) as i64)))
            .collect();
        Ok(())
    }
}

/// A small snapshot written in one piece.
struct Whole(Option<Vec<u8>>);

impl SnapshotSource for Whole {
    fn write_chunk(&mut self, out: &mut Vec<u8>, _max: usize) -> Result<bool, std::io::Error> {
        if let Some(state) = self.0.take() {
            out.extend_from_slice(&state);
        }
        Ok(false)
    }
}

fn free_port() -> std::io::Result<SocketAddr> {
    UdpSocket::bind("127.0.0.1:0")?.local_addr()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let ids = [1u64, 2, 3];
    tls::write_cluster_certs(dir.path(), "counter", &ids, &["client".into()])?;
    let mut peers = BTreeMap::new();
    for id in ids {
        peers.insert(id, free_port()?);
    }

    let mut nodes = Vec::new();
    for id in ids {
        let identity = Identity::load(&TlsFiles::for_node(dir.path(), id))?;
        let options = NodeOptions::new(id, 42, peers.clone(), identity);
        let node = Node::builder(options)
            .storage(MemStorage::default())
            .state_machine(Counter::default())
            .start()
            .await?;
        nodes.push(node);
    }

    let identity = Identity::load(&TlsFiles::in_dir(dir.path(), "client"))?;
    let client = Client::new(ClientOptions::new(
        42,
        peers.values().copied().collect(),
        identity,
    ))?;
    for (seq, delta) in [(1, 5), (2, 10), (3, -3)] {
        let (index, answer) = client.request(add(7, seq, delta)).await?;
        println!(
            "add {delta:>3}: counter = {} (log index {index})",
            String::from_utf8_lossy(&answer)
        );
    }
    // A retry of sequence 3 is answered from the session, not added again.
    let (last, answer) = client.request(add(7, 3, -3)).await?;
    println!(
        "retry of the last command: counter = {}",
        String::from_utf8_lossy(&answer)
    );

    client.close().await;
    // Followers learn the commit index with the next message from the leader.
    for node in &nodes {
        while node.handle().status().await.map_or(0, |s| s.applied) < last {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    for node in nodes {
        let counter = node.shutdown().await?;
        assert_eq!(counter.value, 12);
    }
    println!("all three replicas hold 12");
    Ok(())
}
