//! [`Backoff`]: how long to wait before each retry, and the random source behind
//! the jittered kinds.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tower_mesh_core::random;

/// How the delay before each retry grows.
///
/// Retries are numbered from 1. Every delay is then capped at the policy's
/// [`max_delay`](crate::RetryPolicyBuilder::max_delay), so none ever exceeds it.
///
/// | kind | delay before retry `n` |
/// |---|---|
/// | [`Constant`](Backoff::Constant) | `delay` |
/// | [`Linear`](Backoff::Linear) | `first + step * (n - 1)` |
/// | [`Exponential`](Backoff::Exponential) | `first * factor^(n - 1)` |
/// | [`FullJitter`](Backoff::FullJitter) | uniform in `[0, e)`, where `e` is the capped exponential delay |
/// | [`EqualJitter`](Backoff::EqualJitter) | `e / 2` plus uniform in `[0, e / 2)` |
/// | [`DecorrelatedJitter`](Backoff::DecorrelatedJitter) | uniform in `[first, 3 * previous)`, where `previous` starts at `first` |
///
/// The first three kinds are also scaled by the policy's proportional
/// [`jitter`](crate::RetryPolicyBuilder::jitter); the three jitter kinds carry
/// their own randomness and ignore it. For a delay that depends on the failed
/// call itself (a `Retry-After` header, say), see
/// [`RetryPolicy::delay_fn`](crate::RetryPolicy::delay_fn).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Backoff {
    /// The same delay before every retry.
    Constant {
        /// The delay.
        delay: Duration,
    },
    /// A delay that grows by `step` with each retry.
    Linear {
        /// The delay before the first retry.
        first: Duration,
        /// What each later retry adds.
        step: Duration,
    },
    /// A delay multiplied by `factor` with each retry.
    Exponential {
        /// The delay before the first retry.
        first: Duration,
        /// The growth per retry; at least 1.
        factor: f64,
    },
    /// A uniformly random delay between zero and the exponential delay: the
    /// most spread-out schedule, best at breaking up synchronised clients.
    FullJitter {
        /// The exponential delay before the first retry.
        first: Duration,
        /// The exponential growth per retry; at least 1.
        factor: f64,
    },
    /// Half the exponential delay, plus a uniformly random part of the other half:
    /// never shorter than half the exponential schedule.
    EqualJitter {
        /// The exponential delay before the first retry.
        first: Duration,
        /// The exponential growth per retry; at least 1.
        factor: f64,
    },
    /// Each delay is drawn between `first` and three times the previous delay of
    /// the schedule, so it grows on average without every client moving in step.
    DecorrelatedJitter {
        /// The smallest delay, and the "previous" delay of the first retry.
        first: Duration,
    },
}

impl Backoff {
    /// The same `delay` before every retry.
    pub fn constant(delay: Duration) -> Backoff {
        Backoff::Constant { delay }
    }

    /// `first`, then `first + step`, `first + 2 * step`, and so on.
    pub fn linear(first: Duration, step: Duration) -> Backoff {
        Backoff::Linear { first, step }
    }

    /// `first`, then `first * factor`, `first * factor^2`, and so on.
    pub fn exponential(first: Duration, factor: f64) -> Backoff {
        Backoff::Exponential { first, factor }
    }

    /// Uniform in `[0, first * factor^(n - 1))` before retry `n`.
    pub fn full_jitter(first: Duration, factor: f64) -> Backoff {
        Backoff::FullJitter { first, factor }
    }

    /// Half of `first * factor^(n - 1)` plus a random part of the other half.
    pub fn equal_jitter(first: Duration, factor: f64) -> Backoff {
        Backoff::EqualJitter { first, factor }
    }

    /// Uniform in `[first, 3 * previous)`, starting from `previous = first`.
    pub fn decorrelated_jitter(first: Duration) -> Backoff {
        Backoff::DecorrelatedJitter { first }
    }

    /// The delay before the first retry, before any jitter: the smallest delay the
    /// deterministic kinds produce.
    pub fn first_delay(&self) -> Duration {
        match *self {
            Backoff::Constant { delay } => delay,
            Backoff::Linear { first, .. }
            | Backoff::Exponential { first, .. }
            | Backoff::FullJitter { first, .. }
            | Backoff::EqualJitter { first, .. }
            | Backoff::DecorrelatedJitter { first } => first,
        }
    }

    /// The growth factor, for the kinds that have one.
    pub(crate) fn factor(&self) -> Option<f64> {
        match *self {
            Backoff::Exponential { factor, .. }
            | Backoff::FullJitter { factor, .. }
            | Backoff::EqualJitter { factor, .. } => Some(factor),
            _ => None,
        }
    }

    /// Whether the policy's proportional jitter applies to this kind.
    pub(crate) fn takes_proportional_jitter(&self) -> bool {
        matches!(
            self,
            Backoff::Constant { .. } | Backoff::Linear { .. } | Backoff::Exponential { .. }
        )
    }

    /// The delay before retry `retry` (from 1), capped at `cap`.
    ///
    /// `previous` is the delay before the previous retry (the decorrelated kind
    /// grows from it) and `unit` a random number in `[0, 1)`.
    pub(crate) fn delay(
        &self,
        retry: u32,
        previous: Duration,
        unit: f64,
        cap: Duration,
    ) -> Duration {
        let cap_nanos = cap.as_nanos() as f64;
        let nanos = match *self {
            Backoff::Constant { delay } => delay.as_nanos() as f64,
            Backoff::Linear { first, step } => {
                first.as_nanos() as f64 + step.as_nanos() as f64 * f64::from(retry - 1)
            }
            Backoff::Exponential { first, factor } => grown(first, factor, retry),
            Backoff::FullJitter { first, factor } => {
                grown(first, factor, retry).min(cap_nanos) * unit
            }
            Backoff::EqualJitter { first, factor } => {
                let half = grown(first, factor, retry).min(cap_nanos) / 2.0;
                half + half * unit
            }
            Backoff::DecorrelatedJitter { first } => {
                let low = first.as_nanos() as f64;
                let high = (previous.as_nanos() as f64 * 3.0).max(low);
                low + (high - low) * unit
            }
        };
        from_nanos_capped(nanos, cap)
    }
}

/// `first * factor^(retry - 1)` in nanoseconds; may be infinite, never NaN for a
/// validated factor.
fn grown(first: Duration, factor: f64, retry: u32) -> f64 {
    let exponent = retry.saturating_sub(1).min(2_048) as i32;
    first.as_nanos() as f64 * factor.powi(exponent)
}

/// Turns a nanosecond count into a duration no longer than `cap`; a count that is
/// too large, infinite or not a number becomes `cap`, and a negative one zero.
pub(crate) fn from_nanos_capped(nanos: f64, cap: Duration) -> Duration {
    if nanos.is_nan() || nanos >= cap.as_nanos() as f64 {
        return cap;
    }
    if nanos <= 0.0 {
        return Duration::ZERO;
    }
    if nanos < u64::MAX as f64 {
        return Duration::from_nanos(nanos as u64).min(cap);
    }
    Duration::try_from_secs_f64(nanos / 1e9).map_or(cap, |delay| delay.min(cap))
}

// ===== random source =====

/// A random number in `[0, 1)` that depends only on a seed and a retry number.
///
/// Each value is one SplitMix64 step from a state mixed out of the two. Being a
/// pure function lets [`RetryPolicy::get_delay`](crate::RetryPolicy::get_delay)
/// answer for any retry without mutable state. Not for anything that needs
/// secrecy.
pub(crate) fn unit(seed: u64, retry: u32) -> f64 {
    let state = seed ^ u64::from(retry).wrapping_mul(0xD6E8_FEB8_6659_FD93);
    random::unit(split_mix(state))
}

/// One SplitMix64 step from `state`, as a pure function.
fn split_mix(state: u64) -> u64 {
    random::mix(state.wrapping_add(random::GOLDEN_GAMMA))
}

/// A seed that differs between policies and between runs.
pub(crate) fn random_seed() -> u64 {
    RandomState::new().hash_one("tower-mesh-retry")
}

/// A value to mix into the seed of each request of an unseeded policy, so that
/// requests failing together do not retry together.
pub(crate) fn next_stream() -> u64 {
    static STREAMS: AtomicU64 = AtomicU64::new(1);
    split_mix(STREAMS.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_is_in_the_half_open_unit_interval() {
        for retry in 0..10_000 {
            let value = unit(42, retry);
            assert!((0.0..1.0).contains(&value), "{value}");
        }
    }

    #[test]
    fn unit_depends_on_seed_and_retry() {
        assert_eq!(unit(1, 3), unit(1, 3));
        assert_ne!(unit(1, 3), unit(2, 3));
        assert_ne!(unit(1, 3), unit(1, 4));
    }

    #[test]
    fn oversized_and_invalid_nanos_become_the_cap() {
        let cap = Duration::from_secs(1);
        assert_eq!(from_nanos_capped(f64::INFINITY, cap), cap);
        assert_eq!(from_nanos_capped(f64::NAN, cap), cap);
        assert_eq!(from_nanos_capped(-5.0, cap), Duration::ZERO);
        assert_eq!(from_nanos_capped(1e6, cap), Duration::from_millis(1));
    }
}
