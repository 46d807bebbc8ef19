//! End to end: a follower is killed, the cluster goes on writing and compacts its log past the
//! follower's, the follower restarts and catches up by InstallSnapshot (its metrics show the
//! install), and every acknowledged key is then read back from that node's own state machine.

mod common;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::TestCluster;
use raft_driver_tokio::kv::KvClient;
use raft_proto_core::Role;

fn tcp_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free TCP port")
}

/// `name{node="id"} value` from the node's Prometheus endpoint.
fn metric(addr: SocketAddr, name: &str) -> Option<f64> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.lines()
        .find(|l| l.starts_with(name) && l.as_bytes().get(name.len()) == Some(&b'{'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Writes `count` keys from `writers` concurrent sessions; returns the acknowledged value of
/// every key whose last write was acknowledged (a key with an unknown outcome is left out).
async fn write_keys(
    cluster: &TestCluster,
    round: &str,
    count: usize,
    writers: usize,
    acked: &mut BTreeMap<String, String>,
) {
    let mut tasks = Vec::new();
    for w in 0..writers {
        let mut kv = KvClient::new(cluster.client());
        let round = round.to_string();
        tasks.push(tokio::spawn(async move {
            let mut done = Vec::new();
            for i in (w..count).step_by(writers) {
                // 400 keys written again and again: the log grows, the state does not.
                let key = format!("key-{}", i % 400);
                let value = format!("{round}-{i}-{}", "x".repeat(64));
                let ok = kv.put(key.clone(), value.clone()).await.is_ok();
                done.push((key, ok.then_some(value)));
            }
            done
        }));
    }
    for t in tasks {
        for (key, value) in t.await.unwrap() {
            match value {
                Some(v) => acked.insert(key, v),
                None => acked.remove(&key),
            };
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_follower_catches_up_by_snapshot_and_serves_every_acknowledged_key() {
    let ports: Vec<SocketAddr> = (0..3).map(|_| tcp_port()).collect();
    let mut cluster = TestCluster::start_with(3, |c| {
        c.snapshot.after_entries = Some(300);
        c.snapshot.keep_entries = 50;
        c.snapshot.chunk_bytes = 16 << 10;
        c.metrics = Some(ports[c.node_id as usize - 1]);
    });
    let client = cluster.client();
    let (leader, _) = cluster
        .wait_leader(&client, 0, Duration::from_secs(30))
        .await;
    let mut acked = BTreeMap::new();
    write_keys(&cluster, "a", 200, 4, &mut acked).await;

    let follower = (1..=3).rev().find(|&id| id != leader).unwrap();
    cluster.kill(follower);
    write_keys(&cluster, "b", 1500, 8, &mut acked).await;
    let statuses = cluster.statuses(&client).await;
    let lead = statuses
        .values()
        .find(|s| s.role == Role::Leader)
        .expect("a leader");
    assert!(
        lead.snapshot.index > 0 && lead.snapshot.first_index > 200,
        "the leader took snapshots and compacted its log: {:?}",
        lead.snapshot
    );

    cluster.start_node(follower);
    let metrics = ports[follower as usize - 1];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let all = cluster.statuses(&client).await;
        let caught_up = all.get(&follower).is_some_and(|f| {
            let lead = all.values().find(|s| s.role == Role::Leader);
            f.snapshot.installed >= 1 && lead.is_some_and(|l| f.applied >= l.commit)
        });
        if caught_up {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node {follower} did not catch up by snapshot: {:#?}",
            all.get(&follower)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let installs = metric(metrics, "raft_snapshots_installed_total").unwrap_or(0.0);
    assert!(
        installs >= 1.0,
        "raft_snapshots_installed_total = {installs}"
    );
    let f = &cluster.statuses(&client).await[&follower];
    eprintln!(
        "node {follower} caught up: snapshot {} ({} bytes) installed, log from {}, applied {}",
        f.snapshot.index, f.snapshot.bytes, f.snapshot.first_index, f.applied
    );
    cluster
        .wait_converged(&client, Duration::from_secs(30))
        .await;

    // Read everything back from the restarted node's own state machine: stop the cluster, and
    // make that node the one that wins the next election (the others wait much longer).
    for id in 1..=3 {
        cluster.stop(id);
    }
    for id in (1..=3).filter(|&id| id != follower) {
        cluster.rewrite_config(id, |c| c.election_timeout_ticks = 80);
    }
    cluster.start_node(follower);
    for id in (1..=3).filter(|&id| id != follower) {
        cluster.start_node(id);
    }
    let (new_leader, _) = cluster
        .wait_leader(&client, 0, Duration::from_secs(30))
        .await;
    assert_eq!(new_leader, follower, "the slow-timeout nodes did not win");
    let mut kv = KvClient::new(cluster.client_for(&[follower]));
    assert!(acked.len() > 300, "only {} keys acknowledged", acked.len());
    for (key, value) in &acked {
        let got = kv.get(key.clone()).await.unwrap();
        assert_eq!(
            got.as_deref(),
            Some(value.as_bytes()),
            "key {key} on node {follower}"
        );
    }
    cluster
        .wait_converged(&client, Duration::from_secs(30))
        .await;
}
