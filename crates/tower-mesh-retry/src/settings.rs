//! The numbers of a policy, stored once for the life of the program so that a
//! per-request copy of a policy carries a reference to them instead of a copy.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use crate::backoff::{self, Backoff};

/// The validated numbers of a policy.
///
/// Everything here is fixed once the policy is built. The seed is not: it stays
/// with each copy of the policy, which mixes in a stream of its own per request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    pub(crate) name: &'static str,
    pub(crate) max_retries: u32,
    pub(crate) backoff: Backoff,
    pub(crate) max_delay: Duration,
    pub(crate) jitter: f64,
    pub(crate) deadline: Option<Duration>,
    pub(crate) seeded: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            name: "default",
            max_retries: 3,
            backoff: Backoff::exponential(Duration::from_millis(100), 2.0),
            max_delay: Duration::from_secs(10),
            jitter: 0.5,
            deadline: None,
            seeded: false,
        }
    }
}

impl Settings {
    /// The delay before retry `retry` (from 1) after `previous`, drawn with `seed`.
    pub(crate) fn delay(&self, retry: u32, previous: Duration, seed: u64) -> Duration {
        let unit = backoff::unit(seed, retry);
        let delay = self.backoff.delay(retry, previous, unit, self.max_delay);
        if self.jitter == 0.0 || !self.backoff.takes_proportional_jitter() {
            return delay;
        }
        let factor = 1.0 - self.jitter + 2.0 * self.jitter * unit;
        backoff::from_nanos_capped(delay.as_nanos() as f64 * factor, self.max_delay)
    }

    /// Every value, floats by their bits, for comparing and hashing.
    fn key(&self) -> impl Eq + Hash + '_ {
        let (kind, first, second) = match self.backoff {
            Backoff::Constant { delay } => (0u8, delay, 0),
            Backoff::Linear { first, step } => (1, first, step.as_nanos()),
            Backoff::Exponential { first, factor } => (2, first, u128::from(factor.to_bits())),
            Backoff::FullJitter { first, factor } => (3, first, u128::from(factor.to_bits())),
            Backoff::EqualJitter { first, factor } => (4, first, u128::from(factor.to_bits())),
            Backoff::DecorrelatedJitter { first } => (5, first, 0),
        };
        let numbers = (
            self.max_retries,
            self.max_delay,
            self.jitter.to_bits(),
            self.deadline,
        );
        (self.name, kind, first, second, numbers, self.seeded)
    }
}

impl PartialEq for Settings {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Settings {}

impl Hash for Settings {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

/// The one stored copy of `settings`, made on first use.
///
/// Each distinct configuration is kept for the rest of the program (about a
/// hundred bytes); building the same configuration again reuses it.
pub(crate) fn intern(settings: Settings) -> &'static Settings {
    static STORED: OnceLock<Mutex<HashSet<&'static Settings>>> = OnceLock::new();
    let stored = STORED.get_or_init(Mutex::default);
    let mut stored = stored.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(existing) = stored.get(&settings) {
        return existing;
    }
    let kept: &'static Settings = Box::leak(Box::new(settings));
    stored.insert(kept);
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_settings_are_stored_once() {
        let first = intern(Settings::default());
        let again = intern(Settings::default());
        assert!(std::ptr::eq(first, again));
    }

    #[test]
    fn settings_differing_in_one_number_are_stored_apart() {
        let jittered = Settings {
            jitter: 0.25,
            ..Settings::default()
        };
        assert!(!std::ptr::eq(intern(Settings::default()), intern(jittered)));
    }
}
