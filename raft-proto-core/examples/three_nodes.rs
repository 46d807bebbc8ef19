//! Three Raft nodes in one thread: an in-memory "network" (a queue) and "disk" (a vector per
//! node). They elect a leader and commit a few proposals.
//!
//! Run with `cargo run -p raft-proto-core --example three_nodes`.

use std::collections::VecDeque;

use bytes::Bytes;
use raft_proto_core::{Config, Input, Output, Proposal, RaftNode, RecoveredState, Role};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ids = [1, 2, 3];
    let mut nodes = Vec::new();
    for id in ids {
        nodes.push(RaftNode::new(
            Config::new(id, ids),
            RecoveredState::default(),
        )?);
    }
    let mut disks: Vec<Vec<raft_proto_core::Entry>> = vec![Vec::new(); 3];
    let mut inbox: VecDeque<(usize, Input)> = VecDeque::new();
    let mut proposed = 0;
    for tick in 0..200 {
        for i in 0..3 {
            inbox.push_back((i, Input::Tick));
        }
        while let Some((i, input)) = inbox.pop_front() {
            for out in nodes[i].step(input) {
                match out {
                    Output::Send { to, msg } => {
                        let from = nodes[i].id();
                        inbox.push_back((to as usize - 1, Input::Receive { from, msg }));
                    }
                    Output::Persist(w) => {
                        // A real driver writes and syncs here, then reports the write durable.
                        if let Some(t) = w.truncate_from {
                            disks[i].retain(|e| e.index < t);
                        }
                        disks[i].extend(w.entries);
                        inbox.push_back((i, Input::Persisted { seq: w.seq }));
                    }
                    Output::Apply { entries } => {
                        for e in entries.iter().filter(|e| !e.data.is_empty()) {
                            let text = String::from_utf8_lossy(&e.data);
                            println!(
                                "tick {tick:3}: node {} applies #{} {text:?}",
                                i + 1,
                                e.index
                            );
                        }
                    }
                    Output::Event(ev) => println!("tick {tick:3}: node {}: {ev:?}", i + 1),
                    _ => {}
                }
            }
        }
        if let Some(l) = nodes.iter().position(|n| n.role() == Role::Leader) {
            if proposed < 3 {
                proposed += 1;
                let data = Bytes::from(format!("set x = {proposed}"));
                inbox.push_back((
                    l,
                    Input::Propose(Proposal {
                        request: proposed,
                        data,
                    }),
                ));
            }
        }
    }
    let s = nodes[0].status();
    println!(
        "node 1: term {} commit {} leader {:?}",
        s.term, s.commit, s.leader
    );
    Ok(())
}
