//! End to end: three `raftkv serve` processes; writes through any node, the leader killed with
//! SIGKILL, nodes restarted, every acknowledged write checked.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{TestCluster, ELECTION_TICKS, TICK_MS};
use raft_driver_tokio::kv::KvClient;

type Acked = Arc<Mutex<BTreeMap<String, String>>>;

/// Writes `key-{worker}-{i}` until told to stop; records every acknowledged write.
async fn writer(
    kv: &mut KvClient,
    worker: usize,
    acked: Acked,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> usize {
    let mut failures = 0;
    let mut i = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let key = format!("key-{worker}-{i:05}");
        let value = format!("v{i}-{}", kv.client_id());
        match kv.put(key.clone(), value.clone()).await {
            Ok(_) => {
                acked.lock().unwrap().insert(key, value);
            }
            // The outcome is unknown: the key may or may not exist; not counted as acked.
            Err(_) => failures += 1,
        }
        i += 1;
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_any_node_survive_leader_kill_and_restarts() {
    let mut cluster = TestCluster::start(3);
    let client = cluster.client();
    let (leader, term) = cluster
        .wait_leader(&client, 0, Duration::from_secs(30))
        .await;

    // A client that knows a single node, for each node: followers redirect to the leader.
    let acked: Acked = Arc::default();
    for id in [1, 2, 3] {
        let mut kv = KvClient::new(cluster.client_for(&[id]));
        for i in 0..10 {
            let (key, value) = (format!("via-{id}-{i}"), format!("value-{i}"));
            kv.put(key.clone(), value.clone()).await.unwrap();
            acked.lock().unwrap().insert(key, value);
        }
        assert_eq!(
            kv.get(format!("via-{id}-3")).await.unwrap().as_deref(),
            Some(&b"value-3"[..])
        );
    }

    // Concurrent writers while the leader is killed.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let mut kv = KvClient::new(cluster.client());
        let (acked, stop) = (acked.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            writer(&mut kv, w, acked, stop).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.kill(leader);
    let killed = Instant::now();
    let (new_leader, new_term) = cluster
        .wait_leader(&client, term, Duration::from_secs(30))
        .await;
    let failover = killed.elapsed();
    assert_ne!(new_leader, leader);
    // "A few election timeouts": the timeout is randomized in [T, 2T); allow 6 T for detection,
    // a possible split vote and a loaded machine.
    let timeout = Duration::from_millis(TICK_MS * u64::from(ELECTION_TICKS));
    eprintln!("new leader {new_leader} (term {new_term}) {failover:?} after the kill");
    assert!(failover < timeout * 6, "failover took {failover:?}");

    // Writes continue under the new leader.
    let before = acked.lock().unwrap().len();
    let waited = Instant::now();
    while acked.lock().unwrap().len() == before && waited.elapsed() < Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!(
        "writes resumed {:?} after the new leader was seen ({:?} after the kill)",
        waited.elapsed(),
        killed.elapsed()
    );
    assert!(
        acked.lock().unwrap().len() > before,
        "no write acknowledged after the failover"
    );

    // The old leader comes back; then a follower is killed and restarted too.
    cluster.start_node(leader);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let follower = [1, 2, 3]
        .into_iter()
        .find(|&i| i != new_leader && i != leader)
        .unwrap();
    cluster.kill(follower);
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.start_node(follower);
    tokio::time::sleep(Duration::from_millis(1000)).await;

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut failures = 0;
    for w in writers {
        failures += w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    eprintln!(
        "{} writes acknowledged, {failures} with unknown outcome",
        acked.len()
    );

    // Everything stops cleanly and comes back from disk.
    for id in [1, 2, 3] {
        let status = cluster.stop(id);
        assert!(status.success(), "node {id} exited with {status}");
    }
    for id in [1, 2, 3] {
        cluster.start_node(id);
    }
    let client = cluster.client();
    cluster
        .wait_leader(&client, 0, Duration::from_secs(30))
        .await;
    let mut kv = KvClient::new(client.clone());
    let mut lost = Vec::new();
    for (key, value) in &acked {
        let got = kv.get(key.clone()).await.unwrap();
        if got.as_deref() != Some(value.as_bytes()) {
            lost.push((key.clone(), got));
        }
    }
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );

    // Every replica applied the same log.
    cluster
        .wait_converged(&client, Duration::from_secs(10))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cas_delete_and_status_through_a_follower() {
    let cluster = TestCluster::start(3);
    let client = cluster.client();
    let (leader, _) = cluster
        .wait_leader(&client, 0, Duration::from_secs(30))
        .await;
    let follower = [1, 2, 3].into_iter().find(|&i| i != leader).unwrap();
    let mut kv = KvClient::new(cluster.client_for(&[follower]));
    assert_eq!(kv.put("k", "a").await.unwrap(), None);
    assert_eq!(
        kv.cas("k", Some("b".into()), Some("c".into()))
            .await
            .unwrap(),
        (false, Some("a".into()))
    );
    assert_eq!(
        kv.cas("k", Some("a".into()), Some("c".into()))
            .await
            .unwrap(),
        (true, Some("a".into()))
    );
    assert_eq!(kv.delete("k").await.unwrap(), Some("c".into()));
    assert_eq!(kv.get("k").await.unwrap(), None);
    let s = client.status(cluster.addrs[&leader]).await.unwrap();
    assert_eq!(s.id, leader);
    assert_eq!(s.peers.len(), 2);
    assert!(s.storage_batches > 0 && s.commit >= 5);
    assert!(
        s.peers.iter().all(|p| p.connected && p.matched > 0),
        "{s:#?}"
    );
}
