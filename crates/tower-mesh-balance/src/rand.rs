//! Small deterministic helpers: a seeded generator and a stable hasher.

use std::hash::{Hash, Hasher};

pub(crate) use tower_mesh_core::random::{mix, random_seed, SplitMix64};

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
    fn stable_hash_separates_close_strings() {
        assert_ne!(stable_hash("key-1"), stable_hash("key-2"));
        assert_eq!(stable_hash("key-1"), stable_hash("key-1"));
    }
}
