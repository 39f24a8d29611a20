//! `KeyHasher`: how the session table hashes its [`SessionKey`]s, two words mixed with a
//! per-process random seed by one folded 128-bit multiplication each.
//!
//! The standard library's SipHash costs about as much per key as the rest of a table
//! lookup, and replay at start-up does two lookups per journal record (millions of them),
//! plus a rehash of every key each time the table grows. The keys are fixed-size numbers,
//! so the folded multiply that `foldhash` and `ahash` are built on is enough to spread
//! them over the buckets and shards; the seed, drawn from the standard library's own
//! random keys, keeps the layout unpredictable from outside. (Ids are drawn by the service
//! from a CSPRNG, never chosen by a client, so no one can aim inserts at one bucket.)

use std::hash::{BuildHasher, Hasher, RandomState};

/// Multiplier constants (odd, from the digits of pi, as `foldhash` uses).
const MULTIPLIERS: [u64; 2] = [0x243f_6a88_85a3_08d3, 0x1319_8a2e_0370_7344];

/// Makes one [`KeyHasher`] per key; each table draws its own seed.
#[derive(Clone, Copy)]
pub(crate) struct KeyHasherBuilder {
    seed: u64,
}

impl Default for KeyHasherBuilder {
    fn default() -> Self {
        Self {
            seed: RandomState::new().hash_one(0x5e55_1015_u64),
        }
    }
}

impl BuildHasher for KeyHasherBuilder {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher {
            state: self.seed,
            words: 0,
        }
    }
}

pub(crate) struct KeyHasher {
    state: u64,
    words: usize,
}

/// The high and low halves of `a * b`, folded together by xor.
fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

impl Hasher for KeyHasher {
    fn write_u64(&mut self, word: u64) {
        let multiplier = MULTIPLIERS[self.words % MULTIPLIERS.len()];
        self.state = folded_multiply(self.state ^ word, multiplier);
        self.words += 1;
    }

    /// Anything other than whole words (no `SessionKey` writes any) goes through
    /// [`Hasher::write_u64`] eight bytes at a time.
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn finish(&self) -> u64 {
        // One more round so that the last word's bits reach the top ones, which the
        // table's control bytes use.
        folded_multiply(self.state, MULTIPLIERS[0] ^ self.words as u64)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::domain::SessionId;
    use crate::store::journal::session_key::SessionKey;

    fn key(n: u64) -> SessionKey {
        SessionKey::of(&SessionId::parse(&format!("{n:09}")).expect("a valid id"))
    }

    #[test]
    fn consecutive_ids_spread_over_the_top_and_bottom_bits() {
        let builder = KeyHasherBuilder::default();
        let hashes: Vec<u64> = (0..4096).map(|n| builder.hash_one(key(n))).collect();
        // The bucket index (low bits) and the control byte (top 7 bits) both vary.
        let low: HashSet<u64> = hashes.iter().map(|h| h & 0xfff).collect();
        let top: HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        assert!(low.len() > 2500, "only {} distinct low parts", low.len());
        assert_eq!(top.len(), 128, "control bytes not all used");
    }

    #[test]
    fn equal_keys_hash_equally_and_seeds_differ() {
        let builder = KeyHasherBuilder::default();
        assert_eq!(builder.hash_one(key(42)), builder.hash_one(key(42)));
        let other = KeyHasherBuilder::default();
        assert_ne!(builder.hash_one(key(42)), other.hash_one(key(42)));
    }
}
