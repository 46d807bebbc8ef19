//! The input is a sequence of operations on a 3-node in-memory cluster of `RaftNode`s; Raft's
//! safety properties are checked after every operation (see `raft_fuzz::core`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| raft_fuzz::core::run(data));
