//! [`Streak`]: the run of consecutive failures, tagged with the generation it counts for.

use crate::sync::{AtomicU64, Ordering};

/// Consecutive failures of one closed generation, in one atomic word.
///
/// The high 32 bits hold the generation the count belongs to, the low 32 bits the
/// count. An outcome admitted under another generation finds a different tag and
/// is not counted, so a failure that races a state change can never be carried
/// into the generation after it.
#[derive(Debug)]
pub(crate) struct Streak {
    word: AtomicU64,
}

const COUNT_MASK: u64 = 0xFFFF_FFFF;

fn pack(generation: u64, count: u64) -> u64 {
    (generation << 32) | count
}

fn tag(word: u64) -> u64 {
    word >> 32
}

impl Streak {
    pub(crate) fn new() -> Self {
        Streak {
            word: AtomicU64::new(pack(0, 0)),
        }
    }

    /// Counts a failure of `generation`. Returns the run's new length, or `None`
    /// when the streak already belongs to another generation.
    pub(crate) fn fail(&self, generation: u64) -> Option<u64> {
        let counted = self
            .word
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                let count = (word & COUNT_MASK).saturating_add(1).min(COUNT_MASK);
                (tag(word) == generation).then_some(pack(generation, count))
            });
        counted.ok().map(|before| (before & COUNT_MASK) + 1)
    }

    /// Ends the run on a success of `generation`.
    #[inline]
    pub(crate) fn succeed(&self, generation: u64) {
        // Only write when there is something to clear, so that successes on many
        // cores read a shared cache line instead of fighting over it.
        let word = self.word.load(Ordering::Relaxed);
        if word & COUNT_MASK == 0 || tag(word) != generation {
            return;
        }
        let _ = self
            .word
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                (tag(word) == generation && word & COUNT_MASK != 0).then_some(pack(generation, 0))
            });
    }

    /// Starts an empty run for `generation`, which is about to be published.
    pub(crate) fn restart(&self, generation: u64) {
        // A swap rather than a store: as a read-modify-write it is ordered after
        // any failure counted against the generation it replaces.
        self.word.swap(pack(generation, 0), Ordering::AcqRel);
    }

    /// The length of the current run.
    pub(crate) fn count(&self) -> u64 {
        self.word.load(Ordering::Acquire) & COUNT_MASK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_of_the_tagged_generation_count() {
        let streak = Streak::new();
        assert_eq!(streak.fail(0), Some(1));
        assert_eq!(streak.fail(0), Some(2));
        streak.succeed(0);
        assert_eq!(streak.count(), 0);
    }

    #[test]
    fn outcomes_of_another_generation_are_not_counted() {
        let streak = Streak::new();
        streak.fail(0);
        streak.restart(1);
        assert_eq!(streak.fail(0), None, "a stale failure");
        streak.fail(1);
        streak.succeed(0);
        assert_eq!(streak.count(), 1, "a stale success clears nothing");
    }
}
