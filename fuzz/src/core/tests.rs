//! Tests that run the committed `core_step` seeds.

use raft_proto_core::Role;

use super::{run_cluster, IDS};

fn seed(name: &str) -> Vec<u8> {
    let path = format!("{}/corpus/core_step/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(path).expect("run `cargo run --example make_corpus` first")
}

/// The `replicate` seed (see examples/make_corpus.rs) elects a leader and commits.
#[test]
fn seed_replicate_commits() {
    let cl = run_cluster(&seed("replicate"));
    assert!(!cl.leaders.is_empty(), "no leader elected");
    assert!(
        cl.committed.len() >= 4,
        "only {} entries committed",
        cl.committed.len()
    );
    assert!(
        IDS.iter().all(|&id| cl.applied(id) >= 4),
        "applied: {:?}",
        IDS.map(|id| cl.applied(id))
    );
}

/// The `snapshot_catch_up` seed: node 3 is cut off while the others commit, snapshot and
/// compact; once back, it is sent the leader's snapshot in chunks and installs it.
#[test]
fn seed_snapshot_catch_up_installs_a_snapshot() {
    let cl = run_cluster(&seed("snapshot_catch_up"));
    assert!(!cl.tainted());
    let st = cl.stats();
    assert!(st.taken.get(&1).is_some_and(|&n| n >= 2), "{st:?}");
    assert!(st.compactions.get(&1).is_some_and(|&n| n >= 2), "{st:?}");
    assert!(st.chunks_sent.get(&1).is_some_and(|&n| n > 3), "{st:?}");
    assert_eq!(st.installs.get(&3), Some(&1), "{st:?}");
    assert_eq!(st.restores.get(&3), Some(&1), "{st:?}");
    let floor = cl.node(3).log_floor().index;
    assert!(floor >= 8, "node 3's log starts after {floor}");
    // Node 3's state machine holds the leader's, restored and then applied on.
    let leader = cl.state(1);
    let follower = cl.state(3);
    assert!(follower.len() > floor as usize, "{follower:?}");
    assert_eq!(follower[..], leader[..follower.len()]);
    assert_eq!(cl.applied(3), cl.applied(1));
}

/// The `snapshot_crash_mid_transfer` seed: node 3 loses a transfer and an install that was
/// not durable yet; later node 1 crashes mid-transfer and node 2 takes over and brings node 3
/// up to date (with chunks of its own snapshot, then entries).
#[test]
fn seed_crash_mid_transfer_recovers() {
    let cl = run_cluster(&seed("snapshot_crash_mid_transfer"));
    assert!(!cl.tainted());
    let st = cl.stats();
    assert_eq!(st.crashes.get(&3), Some(&2), "{st:?}");
    let installs = st.installs.get(&3).copied().unwrap_or(0);
    let restores = st.restores.get(&3).copied().unwrap_or(0);
    assert!(installs >= 2, "{st:?}");
    assert!(
        restores >= 1 && restores < installs,
        "an install was lost: {st:?}"
    );
    assert!(st.chunks_sent.get(&2).is_some_and(|&n| n > 0), "{st:?}");
    assert_eq!(cl.node(2).role(), Role::Leader);
    assert_eq!(cl.state(3), cl.state(2));
}

/// Snapshot answers from non-members (and anything from id 0) change nothing and do not taint
/// the run. (Chunks from non-members are heard, as from a leader of a configuration the
/// receiver has not seen: the `snapshot_forged_nonmember_chunks` seed, tainted.)
#[test]
fn seed_forged_nonmember_stays_untainted() {
    let cl = run_cluster(&seed("snapshot_forged_nonmember"));
    assert!(!cl.tainted());
    assert_eq!(cl.stats().restores.get(&3), Some(&1));
    assert_eq!(cl.state(3), cl.state(1));
}

/// The membership seeds: a learner added, promoted in vain (it never answers) and removed,
/// transfers; and removals of a member and of the leader itself. Untainted: every check holds.
#[test]
fn seed_membership_changes_keep_every_check() {
    for name in ["membership_learner_and_transfers", "membership_removals"] {
        let cl = run_cluster(&seed(name));
        assert!(!cl.tainted(), "{name}");
        assert!(cl.committed.len() >= 6, "{name}: {}", cl.committed.len());
    }
    let cl = run_cluster(&seed("membership_removals"));
    let (_, m) = cl.node(2).membership();
    assert!(m.voters().len() < 3, "a member was removed: {m}");
}
