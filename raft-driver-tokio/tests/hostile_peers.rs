//! End to end: what a node does with connections it must not trust. Certificates of another
//! CA, a client certificate posing as a node, garbage datagrams, undecodable and oversized
//! frames: each is refused (at the handshake or by closing that one connection) and the node
//! keeps serving.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::TestCluster;
use raft_driver_tokio::config::NodeConfig;
use raft_driver_tokio::kv::KvClient;
use raft_driver_tokio::protocol::{decode_response, encode_request, ClientRequest, ClientResponse};
use raft_driver_tokio::tls::{self, Identity, TlsFiles};
use raft_driver_tokio::{Client, ClientOptions};
use raft_proto_core::codec::Codec;
use raft_proto_core::message::RequestVote;
use raft_proto_core::{LogId, Message, Role};

fn endpoint() -> quinn::Endpoint {
    tls::install_crypto_provider();
    quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap()
}

/// Connects with `identity` and `alpn`; `None` if the handshake fails on our side.
async fn connect(
    ep: &quinn::Endpoint,
    identity: &Identity,
    alpn: &[u8],
    addr: SocketAddr,
    name: &str,
) -> Option<quinn::Connection> {
    let cfg = tls::client_config(identity, alpn).unwrap();
    let connecting = ep.connect_with(cfg, addr, name).ok()?;
    tokio::time::timeout(Duration::from_secs(5), connecting)
        .await
        .ok()?
        .ok()
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    raft_driver_tokio::frame::put_frame(&mut v, body);
    v
}

/// A vote request for a huge term: if any node accepted it, terms would jump.
fn forged_vote(cluster: &TestCluster, from: u64, to: u64) -> Vec<u8> {
    let msg = Message::RequestVote(RequestVote {
        term: 1_000_000,
        pre_vote: false,
        last_log: LogId {
            term: 1_000_000,
            index: 1_000_000,
        },
        transfer: false,
    });
    frame(
        &Codec::new(cluster.cluster_id)
            .encode(from, to, &msg)
            .unwrap(),
    )
}

/// Sends `bytes` on a new one-way stream; returns whether the node closed the connection
/// within two seconds.
async fn send_and_wait_close(conn: &quinn::Connection, bytes: &[u8]) -> bool {
    if let Ok(mut s) = conn.open_uni().await {
        let _ = s.write_all(bytes).await;
        let _ = s.finish();
    }
    tokio::time::timeout(Duration::from_secs(2), conn.closed())
        .await
        .is_ok()
}

async fn max_term(cluster: &TestCluster, client: &Client) -> u64 {
    cluster
        .statuses(client)
        .await
        .values()
        .map(|s| s.term)
        .max()
        .unwrap()
}

fn foreign_identities(dir: &std::path::Path) -> (Identity, Identity) {
    tls::write_cluster_certs(dir, "other", &[1, 2, 3], &["client".to_string()]).unwrap();
    let node = Identity::load(&TlsFiles::for_node(dir, 2)).unwrap();
    let client = Identity::load(&TlsFiles::in_dir(dir, "client")).unwrap();
    (node, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_cas_certificates_cannot_join_or_send() {
    let mut cluster = TestCluster::start(3);
    let client = cluster.client();
    let (leader, _) = cluster
        .wait_leader(&client, 0, Duration::from_secs(30))
        .await;
    KvClient::new(client.clone())
        .put("before", "1")
        .await
        .unwrap();
    let term = max_term(&cluster, &client).await;
    let other = tempfile::tempdir().unwrap();
    let (foreign_node, foreign_client) = foreign_identities(other.path());
    let real = cluster.client_identity();
    let ep = endpoint();

    // A node certificate of another CA, trusting our CA so that only the node can refuse it.
    let posing = Identity {
        ca: real.ca.clone(),
        chain: foreign_node.chain.clone(),
        key: foreign_node.key.clone_key(),
    };
    for id in [1, 2, 3] {
        if let Some(conn) = connect(
            &ep,
            &posing,
            tls::PEER_ALPN,
            cluster.addrs[&id],
            &tls::node_server_name(id),
        )
        .await
        {
            let vote = forged_vote(&cluster, 2, id);
            if let Ok(mut s) = conn.open_uni().await {
                let _ = s.write_all(&vote).await;
            }
            let closed = tokio::time::timeout(Duration::from_secs(2), conn.closed()).await;
            assert!(
                closed.is_ok(),
                "node {id} kept a connection with a foreign certificate open"
            );
        }
    }
    // A client of another CA gets nothing done.
    let mut opts = ClientOptions::new(
        cluster.cluster_id,
        cluster.addrs.values().copied().collect(),
        Identity {
            ca: real.ca.clone(),
            chain: foreign_client.chain.clone(),
            key: foreign_client.key.clone_key(),
        },
    );
    opts.timeout = Duration::from_secs(3);
    let intruder = Client::new(opts).unwrap();
    assert!(KvClient::new(intruder.clone())
        .put("intruder", "x")
        .await
        .is_err());
    assert!(intruder.status(cluster.addrs[&leader]).await.is_err());

    // A certificate of our own CA that is a *client's* cannot pose as a node.
    for id in [1, 2, 3] {
        let conn = connect(
            &ep,
            &real,
            tls::PEER_ALPN,
            cluster.addrs[&id],
            &tls::node_server_name(id),
        )
        .await
        .expect("our CA's client certificate passes the handshake");
        let from = if id == 2 { 3 } else { 2 };
        assert!(
            send_and_wait_close(&conn, &forged_vote(&cluster, from, id)).await,
            "node {id} accepted frames from a client certificate posing as node {from}"
        );
    }

    // A whole node process with another CA's certificates takes a follower's place: it never
    // joins (no leader, nothing committed) while the real cluster goes on.
    let victim = [1, 2, 3].into_iter().find(|&i| i != leader).unwrap();
    cluster.kill(victim);
    let impostor_cfg = NodeConfig {
        node_id: victim,
        cluster_id: cluster.cluster_id,
        data_dir: other.path().join("data"),
        listen: cluster.addrs[&victim],
        metrics: None,
        join: false,
        admin_clients: None,
        tls: TlsFiles::for_node(other.path(), victim),
        peers: cluster.addrs.clone(),
        tick: Duration::from_millis(common::TICK_MS),
        election_timeout_ticks: common::ELECTION_TICKS,
        heartbeat_ticks: 2,
        pre_vote: true,
        check_quorum: true,
        snapshot: Default::default(),
    };
    let cfg_path = other.path().join("impostor.toml");
    std::fs::write(&cfg_path, impostor_cfg.to_toml()).unwrap();
    let mut impostor = std::process::Command::new(env!("CARGO_BIN_EXE_raftkv"))
        .args(["serve", "--config"])
        .arg(&cfg_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(other.path().join("impostor.log")).unwrap())
        .spawn()
        .unwrap();
    let mut kv = KvClient::new(client.clone());
    for i in 0..20 {
        kv.put(format!("during-{i}"), "v").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut own = ClientOptions::new(
        cluster.cluster_id,
        vec![cluster.addrs[&victim]],
        foreign_client,
    );
    own.timeout = Duration::from_secs(3);
    let impostor_view = Client::new(own)
        .unwrap()
        .status(cluster.addrs[&victim])
        .await
        .unwrap();
    impostor.kill().unwrap();
    impostor.wait().unwrap();
    assert_eq!(impostor_view.commit, 0, "{impostor_view:#?}");
    assert_ne!(impostor_view.role, Role::Leader);
    assert!(impostor_view.leader.is_none() || impostor_view.leader == Some(victim));
    let leader_view = client.status(cluster.addrs[&leader]).await.unwrap();
    assert_eq!(leader_view.role, Role::Leader);
    assert!(max_term(&cluster, &client).await < 1_000_000);
    assert_eq!(
        leader_view.term, term,
        "the term moved: something got through"
    );
    assert!(cluster.running(leader));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_frames_leave_the_node_running() {
    let mut cluster = TestCluster::start(3);
    let client = cluster.client();
    cluster
        .wait_leader(&client, 0, Duration::from_secs(30))
        .await;
    KvClient::new(client.clone())
        .put("before", "1")
        .await
        .unwrap();
    let target = 1;
    let addr = cluster.addrs[&target];
    let term = max_term(&cluster, &client).await;

    // Raw UDP garbage at the QUIC port.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..2000usize {
        let len = 1 + (i * 37) % 1400;
        let packet: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let _ = udp.send_to(&packet, addr);
    }

    // A legitimate node certificate (node 2's) on a peer connection, sending bad frames.
    let node2 = Identity::load(&TlsFiles::for_node(&cluster.certs(), 2)).unwrap();
    let ep = endpoint();
    let name = tls::node_server_name(target);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("undecodable frame", frame(&[0xAB; 40])),
        ("oversized length prefix", u32::MAX.to_le_bytes().to_vec()),
        (
            "frame of another cluster",
            frame(
                &Codec::new(cluster.cluster_id ^ 1)
                    .encode(
                        2,
                        target,
                        &Message::RequestVote(RequestVote {
                            term: 1,
                            pre_vote: true,
                            last_log: LogId::default(),
                            transfer: false,
                        }),
                    )
                    .unwrap(),
            ),
        ),
        (
            "frame addressed to another node",
            forged_vote(&cluster, 2, 3),
        ),
        ("truncated stream", vec![200, 0, 0, 0, 1, 2, 3]),
    ];
    for (what, bytes) in &cases {
        let conn = connect(&ep, &node2, tls::PEER_ALPN, addr, &name)
            .await
            .expect("handshake with a valid node certificate");
        let closed = send_and_wait_close(&conn, bytes).await;
        assert!(closed, "{what}: the node did not close the connection");
    }

    // Client connections with bad requests get a refusal and a closed connection.
    let real = cluster.client_identity();
    let bad_requests: Vec<(&str, Vec<u8>)> = vec![
        ("undecodable request", frame(&[1, 2, 3])),
        (
            "request of another cluster",
            frame(&encode_request(
                cluster.cluster_id ^ 1,
                &ClientRequest::Status,
            )),
        ),
        (
            "oversized request",
            ((raft_driver_tokio::protocol::MAX_CLIENT_FRAME + 1) as u32)
                .to_le_bytes()
                .to_vec(),
        ),
    ];
    for (what, bytes) in &bad_requests {
        let conn = connect(&ep, &real, tls::CLIENT_ALPN, addr, tls::CLUSTER_SERVER_NAME)
            .await
            .unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(bytes).await.unwrap();
        let _ = send.finish();
        let answer = tokio::time::timeout(Duration::from_secs(2), recv.read_to_end(1 << 20)).await;
        if let Ok(Ok(answer)) = answer {
            if answer.len() > 4 {
                let resp =
                    decode_response(cluster.cluster_id, Bytes::from(answer[4..].to_vec())).unwrap();
                assert!(
                    matches!(resp, ClientResponse::Rejected { .. }),
                    "{what}: {resp:?}"
                );
            }
        }
        let closed = tokio::time::timeout(Duration::from_secs(2), conn.closed()).await;
        assert!(closed.is_ok(), "{what}: connection left open");
    }

    // The node is alive, still in the cluster, and nothing moved the term.
    assert!(cluster.running(target));
    let mut kv = KvClient::new(cluster.client_for(&[target]));
    kv.put("after", "2").await.unwrap();
    assert_eq!(kv.get("before").await.unwrap().as_deref(), Some(&b"1"[..]));
    let s = client.status(addr).await.unwrap();
    assert_eq!(s.term, term);
    assert!(
        cluster.log(target).contains("closing connection"),
        "refusals are logged with a reason"
    );
}
