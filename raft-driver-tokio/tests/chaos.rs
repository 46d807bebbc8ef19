//! End to end: writers run while random nodes are SIGKILLed and restarted, over and over.
//! Afterwards every acknowledged write must be readable and all replicas must have applied the
//! same log.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::TestCluster;
use raft_driver_tokio::kv::KvClient;

static WRITES: AtomicUsize = AtomicUsize::new(0);
static UNKNOWN: AtomicUsize = AtomicUsize::new(0);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_repeated_random_kills() {
    let mut cluster = TestCluster::start(3);
    let client = cluster.client();
    cluster
        .wait_leader(&client, 0, Duration::from_secs(30))
        .await;

    let acked: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let mut kv = KvClient::new(cluster.client());
        let (acked, stop) = (acked.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                // Each writer overwrites its own few keys, so that per key the writes are
                // sequential and the last acknowledged one must be what a final read sees.
                let key = format!("w{w}-k{}", i % 12);
                let value = format!("w{w}-{i}");
                if kv.put(key.clone(), value.clone()).await.is_ok() {
                    WRITES.fetch_add(1, Ordering::Relaxed);
                    acked.lock().unwrap().insert(key, value);
                } else {
                    // Unknown outcome: the key's final value can no longer be predicted
                    // (until a later write to it is acknowledged: a session never applies an
                    // older request after a newer one).
                    UNKNOWN.fetch_add(1, Ordering::Relaxed);
                    acked.lock().unwrap().insert(key, String::new());
                }
                i += 1;
            }
        }));
    }

    // A fixed-seed schedule: which node dies, for how long, how long until the next kill.
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..8 {
        let victim = 1 + next() % 3;
        cluster.kill(victim);
        tokio::time::sleep(Duration::from_millis(100 + next() % 700)).await;
        cluster.start_node(victim);
        tokio::time::sleep(Duration::from_millis(300 + next() % 900)).await;
        eprintln!(
            "round {round}: killed and restarted node {victim}; {} writes acknowledged, {} unknown",
            WRITES.load(Ordering::Relaxed),
            UNKNOWN.load(Ordering::Relaxed)
        );
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }

    // Writers are stopped: the last acknowledged value of each key is its current value,
    // unless a later write to it had an unknown outcome (then any of them may have landed).
    let client = cluster.client();
    cluster
        .wait_leader(&client, 0, Duration::from_secs(30))
        .await;
    let mut kv = KvClient::new(client.clone());
    let expected = acked.lock().unwrap().clone();
    let mut checked = 0;
    for (key, value) in &expected {
        let got = kv.get(key.clone()).await.unwrap();
        if value.is_empty() {
            continue;
        }
        checked += 1;
        assert_eq!(
            got.as_deref(),
            Some(value.as_bytes()),
            "key {key}: acknowledged value lost"
        );
    }
    assert!(
        checked > 10,
        "too few keys with a known final value ({checked})"
    );

    cluster
        .wait_converged(&client, Duration::from_secs(15))
        .await;
}
