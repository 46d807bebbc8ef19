//! Arbitrary bytes -> `Codec::decode`. Never panics; an accepted frame re-encodes to a frame
//! that decodes to the same envelope.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| raft_fuzz::wire::check(data));
