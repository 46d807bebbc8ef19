//! Three Raft nodes in one thread: a queue is the network and a vector per node is the disk.
//! They elect a leader and commit a few proposals.
//!
//! Run with `cargo run -p raft-proto-core --example three_nodes`.

use std::collections::VecDeque;

use bytes::Bytes;
use raft_proto_core::{Config, Entry, Input, Output, Proposal, RaftNode, RecoveredState, Role};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ids = [1, 2, 3];
    let mut nodes = Vec::new();
    for id in ids {
        nodes.push(RaftNode::new(
            Config::new(id, ids),
            RecoveredState::default(),
        )?);
    }
    let mut disks: Vec<Vec<Entry>> = vec![Vec::new(); 3];
    let mut queue: VecDeque<(usize, Input)> = VecDeque::new();
    for tick in 0..100 {
        queue.extend((0..3).map(|i| (i, Input::Tick)));
        if let Some(l) = nodes.iter().position(|n| n.role() == Role::Leader) {
            let data = Bytes::from(format!("set x = {tick}"));
            queue.push_back((
                l,
                Input::Propose(Proposal {
                    request: tick,
                    data,
                }),
            ));
        }
        while let Some((i, input)) = queue.pop_front() {
            for out in nodes[i].step(input) {
                match out {
                    Output::Send { to, msg } => {
                        let from = nodes[i].id();
                        queue.push_back((to as usize - 1, Input::Receive { from, msg }));
                    }
                    Output::Persist(w) => {
                        // A real driver writes and syncs here, then reports the write durable.
                        if let Some(cut) = w.truncate_from {
                            disks[i].retain(|e| e.index < cut);
                        }
                        disks[i].extend(w.entries);
                        queue.push_back((i, Input::Persisted { seq: w.seq }));
                    }
                    Output::Apply { entries } if i == 0 => {
                        for e in entries.iter().filter(|e| !e.data.is_empty()) {
                            let cmd = String::from_utf8_lossy(&e.data);
                            println!("tick {tick:3}: node 1 applies #{} {cmd:?}", e.index);
                        }
                    }
                    Output::Event(ev) => println!("tick {tick:3}: node {}: {ev:?}", i + 1),
                    _ => {}
                }
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
