//! Hashing helpers for the search's memo table.
//!
//! The memo is keyed by a 64-bit Zobrist-style hash of (set of linearized operations, model
//! state) that the search maintains incrementally, so the hash table itself only needs to pass
//! that already well-mixed value through. Nothing here depends on a random seed: every run of
//! the checker does exactly the same work, and the verdict never depends on iteration order
//! because the memo is only ever probed, never iterated.

use std::hash::{BuildHasherDefault, Hasher};

/// The SplitMix64 finalizer: a cheap bijective mixer with good avalanche behaviour.
pub(crate) fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A [`Hasher`] for keys that are already uniformly distributed 64-bit hashes.
///
/// `write_u64` passes its value through unchanged; any other input is folded in byte by byte
/// (never used by the memo, present so the type is a total `Hasher`).
#[derive(Default, Clone, Copy)]
pub(crate) struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = mix64(self.0 ^ u64::from(b));
        }
    }

    fn write_u64(&mut self, x: u64) {
        self.0 = x;
    }
}

/// Builds [`PreHashed`] hashers.
pub(crate) type BuildPreHashed = BuildHasherDefault<PreHashed>;
