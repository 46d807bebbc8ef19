//! Arbitrary bytes as a database file -> `RedbStorage::open` + `recover`: a typed error or a
//! valid state, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| raft_fuzz::storage::open_bytes(data));
