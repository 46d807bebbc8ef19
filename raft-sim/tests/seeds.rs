//! Simulator runs inside `cargo test`: determinism, a quiet cluster, hundreds of seeds with every
//! fault kind, and the regression seeds kept in `regressions.txt`.

use raft_sim::explore::{explore, nodes_for, ExploreConfig};
use raft_sim::faults::FaultKinds;
use raft_sim::{FaultChoice, RunReport, Sim, SimConfig};

fn run(seed: u64, nodes: usize, faults: FaultChoice, ticks: u64) -> RunReport {
    let mut cfg = SimConfig::new(seed);
    cfg.nodes = nodes;
    cfg.faults = faults;
    cfg.ticks = ticks;
    Sim::new(cfg).run()
}

fn explain(r: &RunReport) -> String {
    format!(
        "seed {} ({} nodes, faults {}) failed: violations {:?}, verdict {:?}, recovery {:?}\n\
         replay: cargo run -p raft-sim --release -- run --seed {} --nodes {} --faults {} --trace",
        r.seed,
        r.nodes,
        r.faults.describe(),
        r.violations,
        r.verdict,
        r.recovery_ticks,
        r.seed,
        r.nodes,
        r.faults.describe()
    )
}

#[test]
fn same_seed_same_trace_hash_and_different_seed_different_hash() {
    let a = run(42, 5, FaultChoice::Kinds(FaultKinds::ALL), 800);
    let b = run(42, 5, FaultChoice::Kinds(FaultKinds::ALL), 800);
    let c = run(43, 5, FaultChoice::Kinds(FaultKinds::ALL), 800);
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.events, b.events);
    assert_eq!(a.committed, b.committed);
    assert_ne!(a.trace_hash, c.trace_hash);
    assert!(
        a.events > 1_000,
        "the run did something: {} events",
        a.events
    );
}

#[test]
fn a_quiet_cluster_commits_and_is_linearizable() {
    let r = run(1, 3, FaultChoice::Kinds(FaultKinds::NONE), 1_000);
    assert!(r.passed(), "{}", explain(&r));
    assert!(r.committed > 100, "committed only {}", r.committed);
    assert_eq!(r.ops_unknown, 0);
    assert_eq!(r.max_term, 1, "no fault, no second election");
    assert!(matches!(
        r.verdict,
        Some(raft_sim::linearizability::Verdict::Linearizable)
    ));
}

/// 300 seeds, 3 and 5 nodes alternately, every fault kind on.
#[test]
fn three_hundred_seeds_with_every_fault_kind() {
    let cfg = ExploreConfig {
        first: 0,
        end: 300,
        nodes: None,
        ticks: 1_500,
        faults: FaultChoice::Kinds(FaultKinds::ALL),
        jobs: 2,
        stop_on_failure: false,
    };
    let sum = explore(&cfg, &|_, _| {});
    assert_eq!(sum.runs, 300);
    let failures: Vec<String> = sum.failures.iter().map(explain).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(sum.undecided, 0, "every history decided");
}

/// Seeds kept because they once exposed a bug (in the core or in a deliberately broken copy of
/// it); they must keep passing on the real core.
#[test]
fn regression_seeds() {
    let text = include_str!("../regressions.txt");
    let mut n = 0;
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert!(fields.len() >= 3, "malformed regression line: {line:?}");
        let seed: u64 = fields[0].parse().expect("seed");
        let ticks: u64 = fields[1].parse().expect("ticks");
        let faults = if fields[2] == "swarm" {
            FaultChoice::Swarm
        } else {
            FaultChoice::Kinds(FaultKinds::parse(fields[2]).expect("faults"))
        };
        let r = run(seed, nodes_for(seed, None), faults, ticks);
        assert!(r.passed(), "{}", explain(&r));
        n += 1;
    }
    assert!(n > 0, "regressions.txt lists seeds");
}
