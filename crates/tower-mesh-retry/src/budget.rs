//! [`RetryBudget`]: a cap on the extra load that retries add, shared by every
//! clone of a policy.
//!
//! # Why a budget
//!
//! A per-request limit ("at most 3 retries") does not protect a struggling
//! service: when every request fails, every request retries, and the load on the
//! service quadruples exactly when it can least take it. A budget limits retries
//! in proportion to the traffic instead: over a sliding window, retries may add at
//! most `ratio` of the requests made, plus a small floor of retries per second so
//! that a quiet client can still retry the odd failure.
//!
//! # How it counts
//!
//! The window is cut into ten buckets. Each first attempt adds one to the current
//! bucket's request count, each retry one to its retry count; buckets older than
//! the window no longer count. A retry is allowed when, counting itself,
//!
//! ```text
//! retries_in_window <= floor(ratio * requests_in_window + min_per_second * window)
//! ```
//!
//! The right side is computed in integers (the ratio is kept to the nearest
//! millionth), so a ratio such as 0.1 or 0.6 allows exactly what it says and never
//! rounds in the retries' favour. Counting and checking are lock-free: each bucket
//! is one atomic word holding the bucket's time slot and its count, and a retry
//! that finds the budget spent takes its count back.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tower_mesh_core::ConfigError;

const BUCKETS: usize = 10;
const PPM: u128 = 1_000_000;
const MIN_WINDOW: Duration = Duration::from_millis(10);
const MAX_WINDOW: Duration = Duration::from_secs(3_600);
const COUNT_BITS: u32 = 32;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

/// A retry budget: retries may add at most a ratio of extra load, plus a floor of
/// retries per second, over a sliding window.
///
/// Clones share one budget, so a budget given to a
/// [`RetryPolicy`](crate::RetryPolicy) covers every request made through every
/// clone of that policy. The default allows 20 % extra load plus 10 retries per
/// second, over 10 seconds.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_mesh_retry::RetryBudget;
///
/// // One retry for every ten requests, and no floor.
/// let budget = RetryBudget::builder()
///     .ratio(0.1)
///     .min_per_second(0)
///     .window(Duration::from_secs(10))
///     .build()?;
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// for _ in 0..10 {
///     budget.deposit();
/// }
/// assert!(budget.withdraw());
/// assert!(!budget.withdraw(), "the eleventh call would be a second retry for ten requests");
/// # });
/// # Ok::<(), tower_mesh_core::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct RetryBudget {
    shared: Arc<Shared>,
}

struct Shared {
    requests: Ring,
    retries: Ring,
    origin: Instant,
    bucket_nanos: u64,
    ratio_ppm: u128,
    reserve_ppm: u128,
    ratio: f64,
    min_per_second: u32,
    window: Duration,
}

impl RetryBudget {
    /// A builder starting from the defaults: ratio 0.2, 10 retries per second,
    /// a 10 s window.
    pub fn builder() -> RetryBudgetBuilder {
        RetryBudgetBuilder {
            ratio: 0.2,
            min_per_second: 10,
            window: Duration::from_secs(10),
        }
    }

    /// Records a first attempt, which earns retries for the others.
    ///
    /// The retry layers call this for every request; call it yourself only when
    /// you use the budget by hand.
    pub fn deposit(&self) {
        let slot = self.shared.slot();
        self.shared.requests.add(slot);
    }

    /// Asks to spend one retry: `true` when the budget allows it, and the retry is
    /// then counted; `false` when it is spent, and nothing is counted.
    pub fn withdraw(&self) -> bool {
        self.withdraw_in_slot().is_some()
    }

    /// [`withdraw`](Self::withdraw), returning the time slot the retry was
    /// counted in, for [`refund`](Self::refund).
    pub(crate) fn withdraw_in_slot(&self) -> Option<u64> {
        let shared = &*self.shared;
        let slot = shared.slot();
        shared.retries.add(slot);
        let retries = u128::from(shared.retries.sum(slot));
        if retries * PPM <= shared.allowance_ppm(slot) {
            return Some(slot);
        }
        shared.retries.take_back(slot);
        None
    }

    /// Gives back a retry withdrawn in `slot` and never sent (its call was
    /// cancelled during the backoff). A slot that has left the window has
    /// nothing to give back.
    pub(crate) fn refund(&self, slot: u64) {
        self.shared.retries.take_back(slot);
    }

    /// How many more retries the budget would allow right now.
    pub fn remaining(&self) -> u64 {
        let shared = &*self.shared;
        let slot = shared.slot();
        let allowed = shared.allowance_ppm(slot) / PPM;
        let spent = u128::from(shared.retries.sum(slot));
        u64::try_from(allowed.saturating_sub(spent)).unwrap_or(u64::MAX)
    }

    /// The share of extra load that retries may add.
    pub fn ratio(&self) -> f64 {
        self.shared.ratio
    }

    /// Retries per second allowed whatever the traffic.
    pub fn min_per_second(&self) -> u32 {
        self.shared.min_per_second
    }

    /// How much history the budget counts.
    pub fn window(&self) -> Duration {
        self.shared.window
    }
}

impl Default for RetryBudget {
    fn default() -> Self {
        let builder = RetryBudget::builder();
        RetryBudget::new(builder.ratio, builder.min_per_second, builder.window)
    }
}

impl RetryBudget {
    /// Builds a budget from values already validated by the builder.
    fn new(ratio: f64, min_per_second: u32, window: Duration) -> RetryBudget {
        let bucket_nanos = (window.as_nanos() / BUCKETS as u128).max(1) as u64;
        let reserve_ppm = u128::from(min_per_second) * window.as_nanos() / 1_000;
        let shared = Shared {
            requests: Ring::new(),
            retries: Ring::new(),
            origin: Instant::now(),
            bucket_nanos,
            ratio_ppm: (ratio * PPM as f64).round() as u128,
            reserve_ppm,
            ratio,
            min_per_second,
            window,
        };
        RetryBudget {
            shared: Arc::new(shared),
        }
    }
}

impl Shared {
    /// The time slot of the current bucket: buckets since the budget was made.
    fn slot(&self) -> u64 {
        let elapsed = Instant::now().saturating_duration_since(self.origin);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        nanos / self.bucket_nanos
    }

    /// Retries allowed over the window, in millionths of a retry.
    fn allowance_ppm(&self, slot: u64) -> u128 {
        u128::from(self.requests.sum(slot)) * self.ratio_ppm + self.reserve_ppm
    }
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("ratio", &self.shared.ratio)
            .field("min_per_second", &self.shared.min_per_second)
            .field("window", &self.shared.window)
            .field("remaining", &self.remaining())
            .finish()
    }
}

// ===== Ring =====

/// Ten buckets of counts, each one atomic word: the low 32 bits count, the high
/// 32 bits hold the time slot the count belongs to.
///
/// NOTE: slots are compared modulo 2^32. A bucket left untouched for exactly a
/// multiple of 2^32 slots (at least 497 days with the smallest window) would be
/// mistaken for a current one; no other staleness goes unnoticed.
struct Ring {
    buckets: [AtomicU64; BUCKETS],
}

impl Ring {
    fn new() -> Ring {
        Ring {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn bucket(&self, slot: u64) -> &AtomicU64 {
        &self.buckets[(slot % BUCKETS as u64) as usize]
    }

    /// Adds one to the bucket of `slot`, starting it afresh if it holds an older
    /// slot. A caller whose slot is already older than the bucket's (it read the
    /// clock just before a slot turned) counts in the newer slot.
    fn add(&self, slot: u64) {
        let tag = slot as u32;
        let bucket = self.bucket(slot);
        let mut word = bucket.load(Ordering::Relaxed);
        loop {
            let next = match slot_age(tag, word) {
                age if age > 0 => pack(tag, 1),
                _ => word.saturating_add(u64::from(word & COUNT_MASK != COUNT_MASK)),
            };
            match bucket.compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return,
                Err(current) => word = current,
            }
        }
    }

    /// Removes one from the bucket of `slot`, if it still holds that slot and a
    /// count to remove.
    fn take_back(&self, slot: u64) {
        let tag = slot as u32;
        let bucket = self.bucket(slot);
        let mut word = bucket.load(Ordering::Relaxed);
        while (word >> COUNT_BITS) as u32 == tag && word & COUNT_MASK > 0 {
            match bucket.compare_exchange_weak(word, word - 1, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(current) => word = current,
            }
        }
    }

    /// The counts of the buckets whose slot lies within the window ending at
    /// `slot`.
    fn sum(&self, slot: u64) -> u64 {
        let tag = slot as u32;
        self.buckets
            .iter()
            .map(|bucket| bucket.load(Ordering::Acquire))
            .filter(|&word| (0..BUCKETS as i64).contains(&slot_age(tag, word)))
            .map(|word| word & COUNT_MASK)
            .sum()
    }
}

fn pack(tag: u32, count: u64) -> u64 {
    u64::from(tag) << COUNT_BITS | count
}

/// How many slots `tag` is ahead of the slot stored in `word` (negative when the
/// stored slot is newer).
fn slot_age(tag: u32, word: u64) -> i64 {
    i64::from(tag.wrapping_sub((word >> COUNT_BITS) as u32) as i32)
}

// ===== builder =====

/// Builds a [`RetryBudget`]; see [`RetryBudget::builder`].
#[derive(Debug, Clone)]
pub struct RetryBudgetBuilder {
    ratio: f64,
    min_per_second: u32,
    window: Duration,
}

impl RetryBudgetBuilder {
    /// The share of extra load retries may add, in `[0, 1]` (default 0.2: one
    /// retry for every five requests). Kept to the nearest millionth.
    pub fn ratio(mut self, ratio: f64) -> Self {
        self.ratio = ratio;
        self
    }

    /// Retries per second allowed whatever the traffic (default 10).
    pub fn min_per_second(mut self, retries: u32) -> Self {
        self.min_per_second = retries;
        self
    }

    /// How much history counts, from 10 ms to an hour (default 10 s).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Checks the values and makes the budget.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `ratio` when it is not a number in `[0, 1]`, or
    /// `window` when it is outside 10 ms to one hour.
    pub fn build(self) -> Result<RetryBudget, ConfigError> {
        if !(0.0..=1.0).contains(&self.ratio) {
            let reason = format!("must be in [0, 1], got {}", self.ratio);
            return Err(ConfigError::new("ratio", reason));
        }
        if !(MIN_WINDOW..=MAX_WINDOW).contains(&self.window) {
            let reason = format!("must be from 10 ms to 1 hour, got {:?}", self.window);
            return Err(ConfigError::new("window", reason));
        }
        Ok(RetryBudget::new(
            self.ratio,
            self.min_per_second,
            self.window,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_stops_counting_instead_of_spilling_into_the_slot() {
        let ring = Ring::new();
        ring.buckets[3].store(pack(3, COUNT_MASK), Ordering::Relaxed);
        ring.add(3);
        assert_eq!(ring.buckets[3].load(Ordering::Relaxed), pack(3, COUNT_MASK));
    }

    #[test]
    fn a_late_writer_counts_in_the_newer_slot() {
        let ring = Ring::new();
        ring.add(13);
        ring.add(3);
        assert_eq!(ring.sum(13), 2);
    }

    #[test]
    fn buckets_older_than_the_window_are_not_summed() {
        let ring = Ring::new();
        ring.add(5);
        ring.add(6);
        assert_eq!(ring.sum(14), 2);
        assert_eq!(ring.sum(15), 1);
        assert_eq!(ring.sum(16), 0);
    }

    #[test]
    fn taking_back_leaves_other_slots_alone() {
        let ring = Ring::new();
        ring.add(2);
        ring.take_back(12);
        assert_eq!(ring.sum(2), 1);
        ring.take_back(2);
        assert_eq!(ring.sum(2), 0);
    }
}
