//! Determinism: the same configuration (seed included) and the same inputs give the same
//! outputs, bit for bit, through elections, random delivery, partitions and crashes.

mod common;

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use bytes::Bytes;
use common::Cluster;
use raft_proto_core::{EntryKind, Event, Input, NodeId, Output, Proposal, Role};

/// SplitMix64, seeded: the schedule's only source of randomness.
struct Prng(u64);

impl Prng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const NODES: u64 = 5;
const STEPS: usize = 2000;

struct Run {
    trace: Vec<(NodeId, Output)>,
    /// Full internal state of every node at the end.
    states: Vec<String>,
    applied: Vec<Vec<(u64, u64, Bytes)>>,
}

/// Steps node `id` through the harness, and checks on a clone that `step_into` on a non-empty
/// buffer appends exactly the same outputs and leaves the same state.
fn step(c: &mut Cluster, id: NodeId, input: Input) {
    let mut clone = c.node(id).clone();
    let sentinel = Output::Event(Event::UnknownSender { from: 999 });
    let mut buf = vec![sentinel.clone()];
    clone.step_into(input.clone(), &mut buf);
    let before = c.trace.len();
    c.step(id, input);
    assert_eq!(buf[0], sentinel, "step_into must append, not overwrite");
    let direct: Vec<Output> = c.trace[before..].iter().map(|t| t.1.clone()).collect();
    assert_eq!(buf[1..], direct[..], "step_into and step disagree");
    assert_eq!(format!("{clone:?}"), format!("{:?}", c.node(id)));
}

fn deliver(c: &mut Cluster, k: usize) {
    let Some((from, to, msg)) = c.net.remove(k) else {
        return;
    };
    if c.cut.contains(&(from, to)) {
        return;
    }
    step(c, to, Input::Receive { from, msg });
}

fn run(cluster_seed: u64, schedule_seed: u64) -> Run {
    let mut c = Cluster::new(NODES, cluster_seed);
    c.auto_persist = false;
    let mut rng = Prng(schedule_seed);
    let mut request = 0u64;
    for s in 0..STEPS {
        match s {
            600 => {
                // Partition the current leader (or node 1) away from everyone.
                let victim = c.leaders().first().copied().unwrap_or(1);
                c.isolate(victim);
            }
            1000 => c.heal(),
            1300 | 1700 => {
                let id = rng.below(NODES) + 1;
                c.restart(id);
            }
            _ => {}
        }
        let id = rng.below(NODES) + 1;
        match rng.below(100) {
            0..30 => step(&mut c, id, Input::Tick),
            30..65 => {
                if !c.net.is_empty() {
                    let k = rng.below(c.net.len() as u64) as usize;
                    deliver(&mut c, k);
                }
            }
            65..70 => {
                if !c.net.is_empty() {
                    let k = rng.below(c.net.len() as u64) as usize;
                    c.net.remove(k);
                }
            }
            70..80 => c.persist_all(id),
            80..84 => {
                let pending: Vec<u64> = c.disks[&id].pending.iter().map(|w| w.seq()).collect();
                if !pending.is_empty() {
                    let seq = pending[rng.below(pending.len() as u64) as usize];
                    c.persist(id, seq);
                }
            }
            84..95 => {
                request += 1;
                let data = Bytes::from(format!("cmd-{request}"));
                step(&mut c, id, Input::Propose(Proposal { request, data }));
            }
            _ => {
                // Several deliveries in a row, oldest first.
                for _ in 0..3 {
                    deliver(&mut c, 0);
                }
            }
        }
    }
    Run {
        states: (1..=NODES).map(|id| format!("{:?}", c.node(id))).collect(),
        applied: (1..=NODES).map(|id| c.applied_data(id)).collect(),
        trace: std::mem::take(&mut c.trace),
    }
}

fn hash_trace(trace: &[(NodeId, Output)]) -> u64 {
    let mut h = DefaultHasher::new();
    format!("{trace:?}").hash(&mut h);
    h.finish()
}

fn first_difference(a: &[(NodeId, Output)], b: &[(NodeId, Output)]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or((a.len() != b.len()).then(|| a.len().min(b.len())))
}

#[test]
fn same_seed_same_schedule_gives_identical_traces() {
    let a = run(7, 1234);
    let b = run(7, 1234);
    if let Some(i) = first_difference(&a.trace, &b.trace) {
        panic!(
            "traces diverge at output {i}: {:?} vs {:?}",
            a.trace.get(i),
            b.trace.get(i)
        );
    }
    assert_eq!(hash_trace(&a.trace), hash_trace(&b.trace));
    assert_eq!(a.states, b.states, "final node states differ");
    assert_eq!(a.applied, b.applied);

    // The run must exercise the protocol, or the comparison proves little.
    let leaderships = a
        .trace
        .iter()
        .filter(|(_, o)| {
            matches!(
                o,
                Output::Event(Event::RoleChanged {
                    role: Role::Leader,
                    ..
                })
            )
        })
        .count();
    let commands_applied = a
        .trace
        .iter()
        .filter_map(|(_, o)| match o {
            Output::Apply { entries } => Some(entries),
            _ => None,
        })
        .flatten()
        .filter(|e| e.kind == EntryKind::Normal)
        .count();
    assert!(leaderships >= 2, "only {leaderships} leader elections");
    assert!(
        commands_applied >= 10,
        "only {commands_applied} commands applied"
    );
    assert!(a.trace.len() > 1000, "trace of {} outputs", a.trace.len());
}

#[test]
fn different_node_seed_gives_a_different_trace() {
    let a = run(7, 1234);
    let b = run(8, 1234);
    assert!(
        first_difference(&a.trace, &b.trace).is_some(),
        "the core's seed had no effect on the run"
    );
    assert_ne!(hash_trace(&a.trace), hash_trace(&b.trace));
}

#[test]
fn different_schedule_gives_a_different_trace() {
    let a = run(7, 1234);
    let b = run(7, 4321);
    assert_ne!(hash_trace(&a.trace), hash_trace(&b.trace));
}

#[test]
fn cloned_node_evolves_identically() {
    let mut c = Cluster::new(3, 21);
    assert!(c.elect(2));
    c.propose(2, 1, b"x");
    c.deliver_all();
    let mut a = c.node(2).clone();
    let mut b = c.node(2).clone();
    let inputs = [
        Input::Tick,
        Input::Propose(Proposal {
            request: 2,
            data: Bytes::from_static(b"y"),
        }),
        Input::Tick,
        Input::Persisted { seq: 1 },
        Input::Tick,
        Input::Applied { index: 1 },
    ];
    for _ in 0..20 {
        for i in &inputs {
            assert_eq!(a.step(i.clone()), b.step(i.clone()));
        }
    }
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
}
