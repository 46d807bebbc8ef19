//! End to end: a one-node cluster started from flags alone, its Prometheus endpoint, the CLI
//! commands against it, and configuration errors reported before anything starts.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn raftkv() -> Command {
    Command::new(env!("CARGO_BIN_EXE_raftkv"))
}

fn udp_port() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn tcp_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn scrape(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

struct Node(Child);
impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn client_args(certs: &Path, addr: SocketAddr) -> Vec<String> {
    vec![
        "--nodes".into(),
        addr.to_string(),
        "--cluster-id".into(),
        "99".into(),
        "--certs".into(),
        certs.display().to_string(),
    ]
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap()
}

#[test]
fn single_node_from_flags_serves_metrics_and_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let out = run(raftkv()
        .args(["certs", "--nodes", "1", "--out"])
        .arg(&certs));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let addr = udp_port();
    let metrics = tcp_port();
    let node = raftkv()
        .args(["serve", "--node-id", "1", "--cluster-id", "99"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--peer")
        .arg(format!("1={addr}"))
        .arg("--metrics")
        .arg(metrics.to_string())
        .arg("--ca")
        .arg(certs.join("ca.pem"))
        .arg("--cert")
        .arg(certs.join("node-1.pem"))
        .arg("--key")
        .arg(certs.join("node-1.key"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _node = Node(node);

    let args = client_args(&certs, addr);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = run(raftkv().args(["put", "colour", "blue"]).args(&args));
        if out.status.success() {
            assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "put never succeeded: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = run(raftkv().args(["get", "colour"]).args(&args));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "blue");
    let out = run(raftkv().args(["get", "missing"]).args(&args));
    assert_eq!(out.status.code(), Some(1));
    let out = run(raftkv()
        .args(["cas", "colour", "--expected", "red", "--new", "green"])
        .args(&args));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAILED"));
    let out = run(raftkv()
        .args(["cas", "colour", "--expected", "blue", "--new", "green"])
        .args(&args));
    assert!(out.status.success());
    let out = run(raftkv().args(["delete", "colour"]).args(&args));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"green\""));
    let out = run(raftkv().args(["status"]).args(&args));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && table.contains("leader"), "{table}");
    assert!(
        table.contains("configuration at index 1: voters [1]"),
        "{table}"
    );
    let out = run(raftkv().args(["member", "list"]).args(&args));
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        list.lines()
            .nth(1)
            .is_some_and(|l| l.split_whitespace().eq(["1", "voter", &addr.to_string()])),
        "{list}"
    );
    let out = run(raftkv()
        .args([
            "bench",
            "--clients",
            "2",
            "--count",
            "50",
            "--warmup",
            "0",
            "--quiet",
        ])
        .args(&args));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("p99"));

    let body = scrape(metrics).expect("metrics endpoint answers");
    for series in [
        "raft_term{node=\"1\"}",
        "raft_is_leader{node=\"1\"} 1",
        "raft_commit_index",
        "raft_applied_index",
        "raft_proposals_total",
        "raft_storage_write_seconds_bucket",
        "raft_storage_batch_entries_bucket",
        "raft_proposal_seconds_bucket",
        "raft_voters{node=\"1\"} 1",
        "raft_learners{node=\"1\"} 0",
        "raft_membership_joint{node=\"1\"} 0",
    ] {
        assert!(body.contains(series), "{series} missing from:\n{body}");
    }
}

#[test]
fn bad_configuration_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    assert!(run(raftkv()
        .args(["certs", "--nodes", "1,2", "--out"])
        .arg(&certs))
    .status
    .success());
    let base = |extra: &[&str]| {
        let mut c = raftkv();
        c.args(["serve", "--cluster-id", "5"])
            .arg("--data-dir")
            .arg(dir.path().join("d"))
            .arg("--ca")
            .arg(certs.join("ca.pem"))
            .arg("--cert")
            .arg(certs.join("node-1.pem"));
        if !extra.contains(&"--key") {
            c.arg("--key").arg(certs.join("node-1.key"));
        }
        c.args(extra);
        c
    };
    let cases: [(&[&str], &str); 5] = [
        (
            &["--node-id", "3", "--peer", "1=127.0.0.1:1,2=127.0.0.1:2"],
            "not in the peer list",
        ),
        (
            &["--node-id", "1", "--peer", "1=127.0.0.1:1,1=127.0.0.1:2"],
            "duplicate peer id 1",
        ),
        (
            &[
                "--node-id",
                "1",
                "--peer",
                "1=127.0.0.1:1",
                "--key",
                "/nonexistent/key.pem",
            ],
            "does not exist",
        ),
        (
            &["--node-id", "1", "--peer", "1=nowhere"],
            "bad peer address",
        ),
        (&["--peer", "1=127.0.0.1:1"], "node_id"),
    ];
    for (extra, want) in cases {
        let out = run(&mut base(extra));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(want),
            "{extra:?}: {err}"
        );
    }
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "node_id = 1\nmystery = true\n").unwrap();
    let out = run(raftkv().args(["serve", "--config"]).arg(&cfg));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("mystery") && err.contains("bad.toml"),
        "{err}"
    );
}
