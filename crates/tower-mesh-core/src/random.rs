//! Small, fast, seedable randomness for jitter, sampling and load spreading.
//!
//! Every tower-mesh layer that draws random numbers (open-duration jitter, retry
//! jitter, random balancing, fault injection) can be seeded, so a test or a chaos
//! run repeats exactly. None of this is fit for secrets.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

/// The SplitMix64 generator: one `u64` of state, a few instructions per draw.
///
/// # Example
///
/// ```
/// use tower_mesh_core::random::SplitMix64;
///
/// let mut a = SplitMix64::new(42);
/// let mut b = SplitMix64::new(42);
/// assert_eq!(a.next_u64(), b.next_u64(), "the same seed, the same sequence");
/// let unit = a.next_unit();
/// assert!((0.0..1.0).contains(&unit));
/// ```
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// A generator seeded differently in every process.
    pub fn from_entropy() -> Self {
        SplitMix64(random_seed())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN_GAMMA);
        mix(self.0)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_unit(&mut self) -> f64 {
        unit(self.next_u64())
    }

    /// Uniform in `0..bound`, by multiply-shift (no division); `0` when `bound`
    /// is `0`.
    pub fn below(&mut self, bound: usize) -> usize {
        ((u128::from(self.next_u64()) * bound as u128) >> 64) as usize
    }
}

/// The increment of SplitMix64's state: 2^64 divided by the golden ratio.
pub const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 finaliser: a bijection that spreads every input bit over the
/// output, usable as a stateless hash of a counter.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Maps 64 random bits to a uniform `f64` in `[0, 1)`.
pub fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// A seed that differs between processes (from the standard library's per-process
/// hash keys), for layers that were not given one.
pub fn random_seed() -> u64 {
    RandomState::new().hash_one(GOLDEN_GAMMA)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_uniform_enough_for_sampling() {
        let mut rng = SplitMix64::new(7);
        let below_a_quarter = (0..100_000).filter(|_| rng.next_unit() < 0.25).count();
        assert!(
            (24_000..26_000).contains(&below_a_quarter),
            "{below_a_quarter}"
        );
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = SplitMix64::new(7);
        let mut seen = [false; 5];
        for _ in 0..1_000 {
            seen[rng.below(5)] = true;
        }
        assert!(seen.iter().all(|&seen| seen));
        assert_eq!(rng.below(0), 0);
    }

    #[test]
    fn unit_never_reaches_one() {
        assert!(unit(u64::MAX) < 1.0);
        assert_eq!(unit(0), 0.0);
    }
}
