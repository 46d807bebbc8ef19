//! End to end: membership changes and leadership transfers on a cluster of `raftkv serve`
//! processes under a continuous write load, driven through the `raftkv` CLI and the client
//! library; every acknowledged write is read back and the longest write stall is measured.

mod common;

use std::time::{Duration, Instant};

use common::load::Load;
use common::{TestCluster, ELECTION_TICKS, TICK_MS};
use raft_driver_tokio::protocol::{MemberChange, MemberRole, MembershipReport};
use raft_driver_tokio::Client;
use raft_proto_core::{NodeId, Role};

/// The longest randomized election timeout.
const MAX_ELECTION: Duration = Duration::from_millis(2 * ELECTION_TICKS as u64 * TICK_MS);

const EXIT_REFUSED: Option<i32> = Some(3);

/// Runs a CLI change until it succeeds, retrying refusals that say to retry (a learner still
/// catching up, a leader not ready, another change not done).
fn cli_until_done(cluster: &TestCluster, nodes: &[NodeId], args: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, out, err) = cluster.cli(nodes, args);
        if code == Some(0) {
            return out;
        }
        assert!(
            code == EXIT_REFUSED && err.contains("retry"),
            "raftkv {args:?}: exit {code:?}\n{out}\n{err}"
        );
        assert!(
            Instant::now() < deadline,
            "raftkv {args:?} never succeeded: {err}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Parses `raftkv member list` output into (id, role) pairs.
fn parse_members(table: &str) -> Vec<(NodeId, String)> {
    table
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let mut f = l.split_whitespace();
            let id = f.next().unwrap().parse().unwrap();
            (id, f.next().unwrap().to_string())
        })
        .collect()
}

fn voters(m: &MembershipReport) -> Vec<NodeId> {
    m.with_role(MemberRole::Voter)
}

async fn change_until_done(client: &Client, steps: Vec<MemberChange>) -> MembershipReport {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match client.change_membership(steps.clone()).await {
            Ok(m) => return m,
            Err(raft_driver_tokio::ClientError::Rejected(reason)) if reason.contains("retry") => {
                assert!(Instant::now() < deadline, "{steps:?}: {reason}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{steps:?}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_replacement_of_every_node_under_load() {
    let mut cluster = TestCluster::start_with_spares(3, 3, |_| {});
    // The last newcomer is told of no member at all: the leader that adds it dials it.
    cluster.rewrite_config(6, |c| c.peers.clear());
    let (_, _) = cluster
        .wait_leader(&cluster.client_for(&[1, 2, 3]), 0, Duration::from_secs(30))
        .await;
    let load = Load::start(&cluster.client(), 4);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let mut steps = Vec::new();
    for (old, new) in [(1, 4), (2, 5), (3, 6)] {
        let members: Vec<NodeId> = cluster.started();
        cluster.start_node(new);
        let addr = cluster.addrs[&new].to_string();
        let (id, old_s) = (new.to_string(), old.to_string());
        let t = Instant::now();
        cli_until_done(&cluster, &members, &["member", "add-learner", &id, &addr]);
        cli_until_done(&cluster, &members, &["member", "promote", &id]);
        let out = cli_until_done(&cluster, &members, &["member", "remove", &old_s]);
        let listed = parse_members(&out);
        assert!(listed.iter().all(|(id, _)| *id != old), "{out}");
        assert!(listed.contains(&(new, "voter".to_string())), "{out}");
        let removed = t.elapsed();
        cluster.stop(old);
        steps.push((old, new, t - started, removed, t.elapsed()));
    }
    let finished = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let result = load.stop().await;

    let (code, list, err) = cluster.cli(&[4, 5, 6], &["member", "list"]);
    assert_eq!(code, Some(0), "{err}");
    let members = parse_members(&list);
    assert_eq!(
        members,
        [4, 5, 6].map(|id| (id, "voter".to_string())).to_vec(),
        "{list}"
    );
    result
        .check_all_read_back(&cluster.client_for(&[4, 5, 6]))
        .await;
    let (stall_at, stall) = result.longest_stall_at(started, finished);
    eprintln!(
        "rolling replacement: {} writes acknowledged ({} outcomes unknown), steps (old, new, \
         began, removed after, stopped after) {:?}, longest write stall {stall:?} from {:?}, \
         p99 latency {:?}",
        result.acked.len(),
        result.failures,
        steps,
        stall_at - started,
        result.latency_quantile(started, finished, 0.99)
    );
    assert!(result.acked.len() > 100, "too few writes went through");
    assert!(
        stall <= 2 * MAX_ELECTION,
        "a write stall of {stall:?}, more than two election timeouts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grow_to_five_and_shrink_to_three_through_joint_changes_under_load() {
    let mut cluster = TestCluster::start_with_spares(3, 2, |_| {});
    let client = cluster.client();
    let (leader, _) = cluster
        .wait_leader(&cluster.client_for(&[1, 2, 3]), 0, Duration::from_secs(30))
        .await;
    let load = Load::start(&client, 4);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    for id in [4, 5] {
        cluster.start_node(id);
        let addr = cluster.addrs[&id].to_string();
        cli_until_done(
            &cluster,
            &[1, 2, 3],
            &["member", "add-learner", &id.to_string(), &addr],
        );
    }
    // Both learners become voters in one change: a joint configuration, left on its own.
    let grown = change_until_done(
        &client,
        vec![
            MemberChange::Promote { id: 4 },
            MemberChange::Promote { id: 5 },
        ],
    )
    .await;
    assert_eq!(voters(&grown), vec![1, 2, 3, 4, 5], "{grown:?}");
    assert!(!grown.joint && grown.committed);
    // Shrink by two at once, the leader among them.
    let other = [1, 2, 3].into_iter().find(|&i| i != leader).unwrap();
    let shrunk = change_until_done(
        &client,
        vec![
            MemberChange::Remove { id: leader },
            MemberChange::Remove { id: other },
        ],
    )
    .await;
    let kept: Vec<NodeId> = [1, 2, 3, 4, 5]
        .into_iter()
        .filter(|i| *i != leader && *i != other)
        .collect();
    assert_eq!(voters(&shrunk), kept, "{shrunk:?}");
    let finished = Instant::now();
    cluster.stop(leader);
    cluster.stop(other);
    let new_client = cluster.client_for(&kept);
    let (new_leader, _) = cluster
        .wait_leader(&new_client, 0, Duration::from_secs(30))
        .await;
    assert!(kept.contains(&new_leader));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let result = load.stop().await;
    result.check_all_read_back(&new_client).await;
    let stall = result.longest_stall(started, finished);
    eprintln!(
        "grow 3->5 and shrink 5->3: {} writes acknowledged, longest stall {stall:?}",
        result.acked.len()
    );
    assert!(
        stall <= 2 * MAX_ELECTION,
        "a write stall of {stall:?} while changing membership"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_transfer_under_load_and_its_refusals() {
    let mut cluster = TestCluster::start_with_spares(3, 1, |_| {});
    let voters3 = [1, 2, 3];
    let client = cluster.client_for(&voters3);
    let (leader, term) = cluster
        .wait_leader(&client, 0, Duration::from_secs(30))
        .await;
    let load = Load::start(&client, 4);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = Instant::now();
    let target = voters3.into_iter().find(|&i| i != leader).unwrap();
    let (code, out, err) = cluster.cli(&voters3, &["transfer-leader", &target.to_string()]);
    let took = before.elapsed();
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(&format!("node {target} leads")), "{out}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = Instant::now();
    // And once more, to whichever voter is most caught up.
    let (code, out, err) = cluster.cli(&voters3, &["transfer-leader"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let result = load.stop().await;
    let status = client.status(cluster.addrs[&target]).await.unwrap();
    assert!(status.term > term);

    let window_end = before + took + Duration::from_millis(500);
    let stall = result.longest_stall(before, window_end);
    let p99_before = result.latency_quantile(before - Duration::from_secs(2), before, 0.99);
    let p99_during = result.latency_quantile(before, window_end, 0.99);
    let p99_after = result.latency_quantile(window_end, after, 0.99);
    eprintln!(
        "leadership transfer {leader} -> {target}: CLI took {took:?}, longest write stall \
         {stall:?}; p99 latency before {p99_before:?}, around the transfer {p99_during:?}, \
         after {p99_after:?}"
    );
    result.check_all_read_back(&client).await;
    assert!(
        stall < MAX_ELECTION,
        "the transfer stalled writes for {stall:?}, an election timeout or more"
    );

    // Refusals, each leaving the cluster as it was.
    cluster.start_node(4);
    let addr4 = cluster.addrs[&4].to_string();
    cli_until_done(&cluster, &voters3, &["member", "add-learner", "4", &addr4]);
    let (code, before_list, err) = cluster.cli(&voters3, &["member", "list"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        parse_members(&before_list).contains(&(4, "learner".to_string())),
        "{before_list}"
    );
    let refusals: [(&[&str], &str); 5] = [
        (&["transfer-leader", "4"], "not a voter"),
        (&["transfer-leader", "99"], "not a member"),
        (
            &["member", "add-learner", "2", "127.0.0.1:1"],
            "already a member",
        ),
        (&["member", "promote", "9"], "not a member"),
        (&["member", "add-learner", "4", &addr4], "already a member"),
    ];
    for (args, want) in refusals {
        let (code, out, err) = cluster.cli(&voters3, args);
        assert_eq!(code, EXIT_REFUSED, "raftkv {args:?}: {out}{err}");
        assert!(
            err.contains(want),
            "raftkv {args:?}: {err:?} should say {want:?}"
        );
    }
    // A voter that died cannot take over.
    let now_leader = cluster
        .wait_leader(&client, 0, Duration::from_secs(10))
        .await
        .0;
    let dead = voters3.into_iter().find(|&i| i != now_leader).unwrap();
    cluster.kill(dead);
    tokio::time::sleep(MAX_ELECTION + Duration::from_millis(500)).await;
    let (code, out, err) = cluster.cli(&voters3, &["transfer-leader", &dead.to_string()]);
    assert_eq!(code, EXIT_REFUSED, "{out}{err}");
    assert!(err.contains("has not answered"), "{err}");
    let (code, after_list, err) = cluster.cli(&voters3, &["member", "list"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(parse_members(&before_list), parse_members(&after_list));
    let s = client.status(cluster.addrs[&now_leader]).await.unwrap();
    assert_eq!(
        s.role,
        Role::Leader,
        "the refused transfer moved leadership"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_changes_are_refused_with_the_cluster_unchanged() {
    let cluster = TestCluster::start_with_spares(1, 1, |_| {});
    let client = cluster.client_for(&[1]);
    cluster
        .wait_leader(&client, 0, Duration::from_secs(30))
        .await;
    // Bad arguments never reach the cluster (exit 2, the argument parser's).
    for (args, want) in [
        (
            &["member", "add-learner", "0", "127.0.0.1:7000"][..],
            "reserved",
        ),
        (&["member", "add-learner", "5", "nowhere"], "nowhere"),
        (&["member", "promote", "x"], "not a node id"),
        (&["transfer-leader", "-3"], "-3"),
    ] {
        let (code, _, err) = cluster.cli(&[1], args);
        assert_eq!(code, Some(2), "raftkv {args:?}: {err}");
        assert!(
            err.contains(want),
            "raftkv {args:?}: {err:?} should say {want:?}"
        );
    }
    // The last voter cannot go.
    let (code, _, err) = cluster.cli(&[1], &["member", "remove", "1"]);
    assert_eq!(code, EXIT_REFUSED, "{err}");
    assert!(err.contains("last voter"), "{err}");
    // A learner far behind is not promoted: write more than the catch-up limit (1000
    // entries) first, then add a learner that is not running.
    let load = Load::start(&client, 16);
    while load.acked_count() < 1_200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    load.stop().await;
    let addr2 = cluster.addrs[&2].to_string();
    let (code, _, err) = cluster.cli(&[1], &["member", "add-learner", "2", &addr2]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = cluster.cli(&[1], &["member", "promote", "2"]);
    assert_eq!(code, EXIT_REFUSED, "{err}");
    assert!(err.contains("behind"), "{err}");
    let (code, list, _) = cluster.cli(&[1], &["member", "list"]);
    assert_eq!(code, Some(0));
    assert_eq!(
        parse_members(&list),
        vec![(1, "voter".to_string()), (2, "learner".to_string())],
        "{list}"
    );
    // A learner can be removed again.
    let (code, out, err) = cluster.cli(&[1], &["member", "remove", "2"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(parse_members(&out), vec![(1, "voter".to_string())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admin_clients_change_the_membership() {
    let cluster = TestCluster::start_with_spares(1, 1, |c| {
        c.admin_clients = Some(vec!["ops".to_string()]);
    });
    raft_driver_tokio::tls::write_cluster_certs(&cluster.certs(), "e2e", &[], &["ops".to_string()])
        .unwrap();
    let client = cluster.client_for(&[1]);
    cluster
        .wait_leader(&client, 0, Duration::from_secs(30))
        .await;
    let addr2 = cluster.addrs[&2].to_string();
    let add = ["member", "add-learner", "2", addr2.as_str()];
    // The ordinary client may write but not reconfigure.
    let (code, _, err) = cluster.cli(&[1], &["put", "k", "v"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = cluster.cli(&[1], &add);
    assert_eq!(code, EXIT_REFUSED, "{err}");
    assert!(err.contains("may not change the membership"), "{err}");
    let (code, _, err) = cluster.cli(&[1], &["transfer-leader"]);
    assert_eq!(code, EXIT_REFUSED, "{err}");
    let (code, list, err) = cluster.cli(&[1], &["member", "list"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(parse_members(&list), vec![(1, "voter".to_string())]);
    // The admin client may.
    let mut as_ops: Vec<&str> = add.to_vec();
    as_ops.extend(["--name", "ops"]);
    let (code, out, err) = cluster.cli(&[1], &as_ops);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        parse_members(&out).contains(&(2, "learner".to_string())),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_while_another_is_in_progress_is_refused() {
    // Two voters, CheckQuorum off: with node 2 gone, node 1 keeps leading and no change can
    // commit, so the first one stays in progress.
    let mut cluster = TestCluster::start_with_spares(2, 2, |c| c.check_quorum = false);
    let client = cluster.client_for(&[1, 2]);
    let (leader, _) = cluster
        .wait_leader(&client, 0, Duration::from_secs(30))
        .await;
    let other = if leader == 1 { 2 } else { 1 };
    cluster.kill(other);
    let first = {
        let client = cluster.client_for(&[leader]);
        let address = cluster.addrs[&3].to_string();
        tokio::spawn(async move {
            client
                .change_membership(vec![MemberChange::AddLearner { id: 3, address }])
                .await
        })
    };
    // Until the first change is placed, the second may get there first; wait for the entry.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = client.status(cluster.addrs[&leader]).await.unwrap();
        if s.membership.members.iter().any(|m| m.id == 3) {
            assert!(!s.membership.committed);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first change was never placed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let addr4 = cluster.addrs[&4].to_string();
    let (code, out, err) = cluster.cli(&[leader], &["member", "add-learner", "4", &addr4]);
    assert_eq!(code, EXIT_REFUSED, "{out}{err}");
    assert!(
        err.contains("another membership change is in progress"),
        "{err}"
    );
    first.abort();
}
