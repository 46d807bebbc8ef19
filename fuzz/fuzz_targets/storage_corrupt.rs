//! A valid database (built once from a fixed workload) with a few bytes overwritten at
//! fuzz-chosen offsets -> `RedbStorage::open` + `recover`: a typed error or a valid state.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| raft_fuzz::storage::corrupt(data));
