use super::authority::{ca_distinguished_name, decode_oid, parse_distinguished_name, verify_chain};
use super::*;

use std::net::SocketAddr;

use rcgen::KeyPair;
use rustls::pki_types::PrivatePkcs8KeyDer;

use tokio::time::timeout;

const TEST_TIMEOUT: Duration = Duration::from_secs(10);

fn loopback() -> SocketAddr {
    SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0))
}

/// What the server saw of one accepted connection: the negotiated ALPN, `peer_is_node`
/// for ids 1..=3 and `peer_node_id`.
type Report = (Vec<u8>, [bool; 3], Option<u64>);

/// Starts a node server that echoes every bidirectional stream and sends a [`Report`]
/// per accepted connection.
fn echo_server(
    identity: &Identity,
) -> (
    quinn::Endpoint,
    tokio::sync::mpsc::UnboundedReceiver<Report>,
) {
    let endpoint = quinn::Endpoint::server(server_config(identity).unwrap(), loopback()).unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let server = endpoint.clone();
    tokio::spawn(async move {
        while let Some(incoming) = server.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                let _ = tx.send((
                    alpn_of(&conn),
                    [
                        peer_is_node(&conn, 1),
                        peer_is_node(&conn, 2),
                        peer_is_node(&conn, 3),
                    ],
                    peer_node_id(&conn),
                ));
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    tokio::spawn(async move {
                        if let Ok(data) = recv.read_to_end(1 << 20).await {
                            let _ = send.write_all(&data).await;
                            let _ = send.finish();
                        }
                    });
                }
            });
        }
    });
    (endpoint, rx)
}

fn alpn_of(conn: &quinn::Connection) -> Vec<u8> {
    conn.handshake_data()
        .and_then(|h| h.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|h| h.protocol)
        .unwrap_or_default()
}

/// Sends `msg` on a new stream and returns the answer.
async fn round_trip(conn: &quinn::Connection, msg: &[u8]) -> anyhow::Result<Vec<u8>> {
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(msg).await?;
    send.finish()?;
    Ok(recv.read_to_end(1 << 20).await?)
}

/// Dials `server` and, if the handshake succeeds, does one round trip.
async fn dial(
    identity: &Identity,
    alpn: &[u8],
    server: SocketAddr,
    server_name: &str,
) -> anyhow::Result<(quinn::Connection, Vec<u8>)> {
    let client = quinn::Endpoint::client(loopback())?;
    let conn = client
        .connect_with(client_config(identity, alpn)?, server, server_name)?
        .await?;
    let answer = round_trip(&conn, b"ping").await?;
    Ok((conn, answer))
}

fn cluster(dir: &Path) -> (Identity, Identity, Identity) {
    write_cluster_certs(dir, "test", &[1, 2], &["alice".to_string()]).unwrap();
    (
        Identity::load(&TlsFiles::for_node(dir, 1)).unwrap(),
        Identity::load(&TlsFiles::for_node(dir, 2)).unwrap(),
        Identity::load(&TlsFiles::in_dir(dir, "alice")).unwrap(),
    )
}

#[tokio::test]
async fn same_ca_node_and_client_connect_with_both_alpns() {
    let dir = tempfile::tempdir().unwrap();
    let (node1, node2, alice) = cluster(dir.path());
    let (server, mut reports) = echo_server(&node1);
    let addr = server.local_addr().unwrap();

    // Node 2 dials node 1 as a peer, verifying node 1's own name.
    let (conn, answer) = timeout(
        TEST_TIMEOUT,
        dial(&node2, PEER_ALPN, addr, &node_server_name(1)),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(answer, b"ping");
    assert_eq!(alpn_of(&conn), PEER_ALPN);
    assert!(peer_is_node(&conn, 1));
    assert!(!peer_is_node(&conn, 2));
    assert_eq!(peer_node_id(&conn), Some(1));
    let (alpn, is_node, id) = reports.recv().await.unwrap();
    assert_eq!(alpn, PEER_ALPN);
    assert_eq!(is_node, [false, true, false]);
    assert_eq!(id, Some(2));

    // A client that only knows the address verifies the cluster name.
    let (conn, answer) = timeout(
        TEST_TIMEOUT,
        dial(&alice, CLIENT_ALPN, addr, CLUSTER_SERVER_NAME),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(answer, b"ping");
    assert_eq!(alpn_of(&conn), CLIENT_ALPN);
    assert!(peer_is_node(&conn, 1));
    let (alpn, is_node, id) = reports.recv().await.unwrap();
    assert_eq!(alpn, CLIENT_ALPN);
    assert_eq!(is_node, [false, false, false]);
    assert_eq!(id, None);

    // A node may also speak the client protocol, and dial by IP address.
    let (_, answer) = timeout(TEST_TIMEOUT, dial(&node2, CLIENT_ALPN, addr, "127.0.0.1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(answer, b"ping");

    // Dialing node 1 while expecting node 2 fails the name check.
    let wrong = timeout(
        TEST_TIMEOUT,
        dial(&node2, PEER_ALPN, addr, &node_server_name(2)),
    )
    .await
    .unwrap();
    assert!(wrong.is_err());
    server.close(0u32.into(), b"done");
}

#[tokio::test]
async fn client_certificate_from_another_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let (node1, _, _) = cluster(dir.path());
    write_cluster_certs(other.path(), "other", &[1], &["mallory".to_string()]).unwrap();
    // Mallory trusts the right CA but her certificate comes from another one.
    let mut mallory = Identity::load(&TlsFiles::in_dir(other.path(), "mallory")).unwrap();
    mallory.ca = node1.ca.clone();
    let mut impostor = Identity::load(&TlsFiles::for_node(other.path(), 1)).unwrap();
    impostor.ca = node1.ca.clone();

    let (server, mut reports) = echo_server(&node1);
    let addr = server.local_addr().unwrap();
    for (identity, alpn) in [(&mallory, CLIENT_ALPN), (&impostor, PEER_ALPN)] {
        let result = timeout(
            TEST_TIMEOUT,
            dial(identity, alpn, addr, CLUSTER_SERVER_NAME),
        )
        .await
        .expect("the server must close the connection, not hang");
        assert!(result.is_err(), "a foreign certificate got an answer");
    }
    assert!(reports.try_recv().is_err(), "a foreign client was accepted");
    server.close(0u32.into(), b"done");
}

#[tokio::test]
async fn client_trusting_another_ca_refuses_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let (node1, _, mut alice) = cluster(dir.path());
    write_cluster_certs(other.path(), "other", &[], &[]).unwrap();
    alice.ca = read_certs(&other.path().join("ca.pem")).unwrap();

    let (server, _reports) = echo_server(&node1);
    let addr = server.local_addr().unwrap();
    let result = timeout(
        TEST_TIMEOUT,
        dial(&alice, CLIENT_ALPN, addr, CLUSTER_SERVER_NAME),
    )
    .await
    .unwrap();
    assert!(result.is_err());
    server.close(0u32.into(), b"done");
}

#[test]
fn load_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_cluster_certs(dir.path(), "test", &[1], &[]).unwrap();
    let good = TlsFiles::for_node(dir.path(), 1);

    let missing = dir.path().join("missing.pem");
    let files = TlsFiles {
        ca: missing.clone(),
        ..good.clone()
    };
    match Identity::load(&files) {
        Err(TlsError::Read { path, .. }) => assert_eq!(path, missing),
        other => panic!("expected a read error, got {other:?}"),
    }

    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "nothing to see here\n").unwrap();
    let files = TlsFiles {
        cert: empty.clone(),
        ..good.clone()
    };
    match Identity::load(&files) {
        Err(e @ TlsError::NoCertificate { .. }) => {
            assert!(e.to_string().contains(&*empty.to_string_lossy()));
        }
        other => panic!("expected no certificate, got {other:?}"),
    }

    // A certificate file where the key should be.
    let files = TlsFiles {
        key: good.cert.clone(),
        ..good.clone()
    };
    match Identity::load(&files) {
        Err(TlsError::NoKey { path }) => assert_eq!(path, good.cert),
        other => panic!("expected no key, got {other:?}"),
    }

    let broken = dir.path().join("broken.pem");
    std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\n!!!!\n").unwrap();
    let files = TlsFiles {
        ca: broken.clone(),
        ..good.clone()
    };
    match Identity::load(&files) {
        Err(TlsError::Pem { path, .. }) => assert_eq!(path, broken),
        other => panic!("expected malformed PEM, got {other:?}"),
    }

    let identity = Identity::load(&good).unwrap();
    assert_eq!(identity.ca.len(), 1);
    assert_eq!(identity.chain.len(), 1);
    assert!(server_config(&identity.clone()).is_ok());
}

#[test]
fn mismatched_key_and_certificate_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_cluster_certs(dir.path(), "test", &[1], &[]).unwrap();
    let other = CertAuthority::generate("other").unwrap();
    let other_key = dir.path().join("other.key");
    std::fs::write(&other_key, other.key_pem()).unwrap();
    match CertAuthority::load(&dir.path().join("ca.pem"), &other_key) {
        Err(TlsError::BadAuthority { path, .. }) => assert_eq!(path, other_key),
        other => panic!("expected a bad authority, got {other:?}"),
    }
    // A node certificate is no CA.
    let node_key = dir.path().join("node-1.key");
    let node_cert = dir.path().join("node-1.pem");
    match CertAuthority::load(&node_cert, &node_key) {
        Err(e @ TlsError::BadAuthority { .. }) => {
            assert!(e.to_string().contains("not a CA certificate"), "{e}");
        }
        other => panic!("expected a bad authority, got {other:?}"),
    }

    // The identity's key does not match its certificate.
    let mut identity = Identity::load(&TlsFiles::for_node(dir.path(), 1)).unwrap();
    identity.key = PrivatePkcs8KeyDer::from(KeyPair::generate().unwrap().serialize_der()).into();
    assert!(matches!(server_config(&identity), Err(TlsError::Rustls(_))));
}

#[test]
fn cluster_directory_is_extended_and_the_ca_reused() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let first = write_cluster_certs(&certs, "test", &[1, 2], &["client".to_string()]).unwrap();
    let names: Vec<_> = first
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "ca.pem",
            "ca.key",
            "node-1.pem",
            "node-1.key",
            "node-2.pem",
            "node-2.key",
            "client.pem",
            "client.key"
        ]
    );
    let ca_before = std::fs::read_to_string(certs.join("ca.pem")).unwrap();
    let second = write_cluster_certs(&certs, "ignored", &[3], &[]).unwrap();
    assert_eq!(second, [certs.join("node-3.pem"), certs.join("node-3.key")]);
    assert_eq!(
        std::fs::read_to_string(certs.join("ca.pem")).unwrap(),
        ca_before
    );

    // The reloaded CA issues certificates that verify against the original.
    let ca = CertAuthority::load(&certs.join("ca.pem"), &certs.join("ca.key")).unwrap();
    assert_eq!(ca.cert_pem(), ca_before);
    let node3 = Identity::load(&TlsFiles::for_node(&certs, 3)).unwrap();
    verify_chain(&node3.chain[0], &node3.ca[0]).unwrap();
    assert!(cert_is_valid_for(&node3.chain[0], &node_server_name(3)));
    assert!(cert_is_valid_for(&node3.chain[0], CLUSTER_SERVER_NAME));
    assert!(cert_is_valid_for(&node3.chain[0], "localhost"));
    let client = Identity::load(&TlsFiles::in_dir(&certs, "client")).unwrap();
    assert!(cert_is_valid_for(&client.chain[0], "client.client.raftkv"));
    assert!(!cert_is_valid_for(&client.chain[0], CLUSTER_SERVER_NAME));

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for key in ["ca.key", "node-1.key", "node-3.key", "client.key"] {
            let mode = std::fs::metadata(certs.join(key))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{key}");
        }
    }

    // A lone CA certificate is not silently replaced.
    std::fs::remove_file(certs.join("ca.key")).unwrap();
    assert!(matches!(
        write_cluster_certs(&certs, "test", &[4], &[]),
        Err(TlsError::BadAuthority { .. })
    ));
}

#[test]
fn names_and_ids_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        "",
        "Alice",
        "a b",
        "-a",
        "a-",
        "ca",
        "node-1",
        "a.b",
        &"x".repeat(64),
    ] {
        assert!(validate_client_name(bad).is_err(), "{bad:?}");
        assert!(
            write_cluster_certs(dir.path(), "t", &[1], &[bad.to_string()]).is_err(),
            "{bad:?}"
        );
    }
    for good in ["client", "alice-2", "0"] {
        validate_client_name(good).unwrap();
    }
    assert!(write_cluster_certs(dir.path(), "t", &[0], &[]).is_err());
    assert!(write_cluster_certs(dir.path(), "t", &[1, 1], &[]).is_err());
    assert!(write_cluster_certs(dir.path(), "t", &[1], &["a".into(), "a".into()]).is_err());
    assert!(write_cluster_certs(dir.path(), "", &[1], &[]).is_err());
    // Nothing was written by the refused calls.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    assert_eq!(parse_node_server_name("node-17.raftkv"), Some(17));
    assert_eq!(parse_node_server_name("node-017.raftkv"), None);
    assert_eq!(parse_node_server_name("node-.raftkv"), None);
    assert_eq!(parse_node_server_name("node-1.raftkvx"), None);
    assert_eq!(parse_node_server_name("node-1xraftkv"), None);
}

#[test]
fn distinguished_names_round_trip() {
    let ca = CertAuthority::generate("Ünïcode cluster").unwrap();
    let cert = webpki::EndEntityCert::try_from(ca.cert_der()).unwrap();
    let dn = parse_distinguished_name(cert.subject()).unwrap();
    assert_eq!(dn, ca_distinguished_name("Ünïcode cluster"));
    assert_eq!(
        decode_oid(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]).unwrap(),
        [1, 2, 840, 113549]
    );
    assert!(decode_oid(&[0x86]).is_err());
}
