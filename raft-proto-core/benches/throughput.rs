//! Throughput of the core alone: three nodes in one thread, messages handed over in memory,
//! every write "durable" at once. Reports committed entries per second and heap allocations per
//! committed entry (counted by a wrapping global allocator).
//!
//! `cargo bench -p raft-proto-core --bench throughput` (add `-- --entries N` to change the run).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use raft_proto_core::{Config, Input, Output, Proposal, RaftNode, RecoveredState, Role};

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; we only count them.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const PAYLOAD: usize = 64;

/// Payloads are slices of a larger receive buffer, as a driver reading client frames has them.
struct Payloads {
    arena: Bytes,
    at: usize,
}

impl Payloads {
    fn next(&mut self) -> Bytes {
        if self.at + PAYLOAD > self.arena.len() {
            self.arena = Bytes::from(vec![7u8; 1 << 20]);
            self.at = 0;
        }
        self.at += PAYLOAD;
        self.arena.slice(self.at - PAYLOAD..self.at)
    }
}

struct Loop {
    nodes: Vec<RaftNode>,
    queue: VecDeque<(usize, Input)>,
    out: Vec<Output>,
    committed: u64,
}

impl Loop {
    fn new() -> Self {
        let ids = [1u64, 2, 3];
        let nodes = ids
            .iter()
            .map(|&id| {
                let mut c = Config::new(id, ids);
                c.max_inflight_messages = 1024;
                c.max_uncommitted_bytes = u64::MAX / 2;
                RaftNode::new(c, RecoveredState::default()).expect("valid config")
            })
            .collect();
        let mut l = Loop {
            nodes,
            queue: VecDeque::with_capacity(1024),
            out: Vec::with_capacity(1024),
            committed: 0,
        };
        while l.nodes[0].role() != Role::Leader {
            l.queue.push_back((0, Input::Tick));
            l.run();
        }
        l
    }

    fn run(&mut self) {
        while let Some((i, input)) = self.queue.pop_front() {
            self.nodes[i].step_into(input, &mut self.out);
            for o in self.out.drain(..) {
                match o {
                    Output::Send { to, msg } => {
                        let from = i as u64 + 1;
                        self.queue
                            .push_back((to as usize - 1, Input::Receive { from, msg }));
                    }
                    Output::Persist(w) => {
                        self.queue.push_back((i, Input::Persisted { seq: w.seq }))
                    }
                    Output::Apply { entries } => {
                        if i == 0 {
                            self.committed += entries.len() as u64;
                        }
                        // As a driver does: the state machine reports what it applied.
                        if let Some(last) = entries.last() {
                            self.queue
                                .push_back((i, Input::Applied { index: last.index }));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

fn measure(batch: usize, entries: u64) -> (f64, f64) {
    let mut l = Loop::new();
    let mut payloads = Payloads {
        arena: Bytes::new(),
        at: 0,
    };
    let start_committed = l.committed;
    let allocs0 = ALLOCS.load(Ordering::Relaxed);
    let t0 = Instant::now();
    let mut request = 0u64;
    while l.committed - start_committed < entries {
        let input = if batch == 1 {
            request += 1;
            Input::Propose(Proposal {
                request,
                data: payloads.next(),
            })
        } else {
            let mut ps = Vec::with_capacity(batch);
            for _ in 0..batch {
                request += 1;
                ps.push(Proposal {
                    request,
                    data: payloads.next(),
                });
            }
            Input::ProposeBatch(ps)
        };
        l.queue.push_back((0, input));
        l.run();
    }
    let secs = t0.elapsed().as_secs_f64();
    let n = (l.committed - start_committed) as f64;
    let allocs = (ALLOCS.load(Ordering::Relaxed) - allocs0) as f64;
    (n / secs, allocs / n)
}

fn main() {
    let mut entries: u64 = 1_000_000;
    let args: Vec<String> = std::env::args().collect();
    if let Some(p) = args.iter().position(|a| a == "--entries") {
        entries = args
            .get(p + 1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(entries);
    }
    println!("3-node in-memory loop, {PAYLOAD}-byte payloads, instant persistence");
    println!(
        "{:>6} {:>12} {:>18} {:>16}",
        "batch", "entries", "committed/s", "allocs/entry"
    );
    for batch in [1usize, 64] {
        let n = if batch == 1 { entries / 4 } else { entries };
        let mut best = (0.0f64, f64::MAX);
        for _ in 0..3 {
            let (rate, allocs) = measure(batch, n);
            if rate > best.0 {
                best = (rate, allocs);
            }
        }
        println!("{batch:>6} {n:>12} {:>18.0} {:>16.3}", best.0, best.1);
    }
}
