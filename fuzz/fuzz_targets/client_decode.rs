//! Arbitrary bytes -> `Command::decode`, `Response::decode`, `KvStore::restore`. Never panics;
//! whatever is accepted re-encodes and decodes to the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| raft_fuzz::kv::check(data));
