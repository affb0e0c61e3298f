//! Small deterministic helpers: a seeded generator and a stable hasher.

use std::hash::{Hash, Hasher};

/// SplitMix64: fast, seedable, good enough to spread load; never for secrets.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `0..bound`; `bound` must not be zero.
    pub(crate) fn below(&mut self, bound: usize) -> usize {
        // Multiply-shift: unbiased enough for load spreading, and division free.
        ((u128::from(self.next_u64()) * bound as u128) >> 64) as usize
    }
}

/// The SplitMix64 finaliser: a bijection that spreads every input bit.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seed that differs between runs.
pub(crate) fn random_seed() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::BuildHasher;
    RandomState::new().hash_one(0x5EED_u64)
}

/// Hashes a value the same way in every process, so consistent hashing places keys
/// identically on every client.
pub(crate) fn stable_hash<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut hasher = StableHasher(0x243F_6A88_85A3_08D3);
    value.hash(&mut hasher);
    hasher.finish()
}

/// A fixed-key multiply-rotate hasher with a strong final mix.
struct StableHasher(u64);

impl Hasher for StableHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 56));
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.add(value);
    }

    fn finish(&self) -> u64 {
        mix(self.0)
    }
}

impl StableHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0 ^ word)
            .rotate_left(23)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = SplitMix64::new(7);
        let mut seen = [false; 5];
        for _ in 0..1_000 {
            let value = rng.below(5);
            seen[value] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn stable_hash_separates_close_strings() {
        assert_ne!(stable_hash("key-1"), stable_hash("key-2"));
        assert_eq!(stable_hash("key-1"), stable_hash("key-1"));
    }
}
