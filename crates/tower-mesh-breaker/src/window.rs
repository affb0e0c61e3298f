//! Lock-free sliding windows of call outcomes, for failure and slow-call rates.
//!
//! Both windows are written by every recorded call without a lock: a handful of
//! atomic operations per call, no allocation. They are reset only on a state
//! change, under the breaker's transition lock.

use crate::config::SlidingWindow;
use crate::sync::{AtomicU64, AtomicU8, Ordering};

/// One recorded call, as the window sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sample {
    pub(crate) failure: bool,
    pub(crate) slow: bool,
}

/// The window's totals at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) calls: u32,
    pub(crate) failures: u32,
    pub(crate) slow: u32,
}

impl Counts {
    pub(crate) fn failure_rate(self) -> Option<f64> {
        percent(self.failures, self.calls)
    }

    pub(crate) fn slow_rate(self) -> Option<f64> {
        percent(self.slow, self.calls)
    }
}

fn percent(part: u32, whole: u32) -> Option<f64> {
    (whole > 0).then(|| f64::from(part) * 100.0 / f64::from(whole))
}

#[derive(Debug)]
pub(crate) enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    pub(crate) fn new(config: SlidingWindow) -> Window {
        match config {
            SlidingWindow::Count { size } => Window::Count(CountWindow::new(size)),
            SlidingWindow::Time { duration, buckets } => {
                let width = (duration.as_nanos() / u128::from(buckets)) as u64;
                Window::Time(TimeWindow::new(buckets, width))
            }
        }
    }

    /// Records one call and returns the totals including it.
    pub(crate) fn record(&self, sample: Sample, now_nanos: u64) -> Counts {
        match self {
            Window::Count(window) => window.record(sample),
            Window::Time(window) => window.record(sample, now_nanos),
        }
    }

    /// Whether [`record`](Self::record) and [`counts`](Self::counts) need the time.
    pub(crate) fn is_timed(&self) -> bool {
        matches!(self, Window::Time(_))
    }

    pub(crate) fn counts(&self, now_nanos: u64) -> Counts {
        match self {
            Window::Count(window) => window.counts(),
            Window::Time(window) => window.counts(now_nanos),
        }
    }

    pub(crate) fn clear(&self) {
        match self {
            Window::Count(window) => window.clear(),
            Window::Time(window) => window.clear(),
        }
    }
}

// ===== CountWindow =====

/// The last `size` calls, exactly.
///
/// Each slot holds one outcome code. A writer claims the next slot with a
/// `fetch_add` on the cursor, swaps its code in, and moves the totals by the
/// difference between what it wrote and what it pushed out. Since every code is
/// added once and removed once, the totals always settle on the slots' contents.
///
/// The totals are packed in one `u64` (21 bits each for calls, failures and slow
/// calls) so that one `fetch_add` moves all three. A reader that lands between two
/// writers may see a field that is momentarily "negative" (a borrow from the
/// field above); [`CountWindow::counts`] recognises such a reading as
/// inconsistent and reports the next consistent one instead.
#[derive(Debug)]
pub(crate) struct CountWindow {
    slots: Box<[AtomicU8]>,
    cursor: AtomicU64,
    totals: AtomicU64,
}

const EMPTY: u8 = 0;
const RECORDED: u8 = 0b001;
const FAILED: u8 = 0b010;
const SLOW: u8 = 0b100;

const FIELD_BITS: u32 = 21;
const FIELD_MASK: u64 = (1 << FIELD_BITS) - 1;

impl CountWindow {
    fn new(size: u32) -> CountWindow {
        CountWindow {
            slots: (0..size).map(|_| AtomicU8::new(EMPTY)).collect(),
            cursor: AtomicU64::new(0),
            totals: AtomicU64::new(0),
        }
    }

    fn record(&self, sample: Sample) -> Counts {
        let code =
            RECORDED | if sample.failure { FAILED } else { 0 } | if sample.slow { SLOW } else { 0 };
        let index = self.cursor.fetch_add(1, Ordering::Relaxed) % self.slots.len() as u64;
        let replaced = self.slots[index as usize].swap(code, Ordering::AcqRel);
        let delta = packed(code).wrapping_sub(packed(replaced));
        if delta == 0 {
            // The same outcome replaced: the totals stand, and leaving them
            // unwritten spares every core a contended write.
            return self.counts();
        }
        let before = self.totals.fetch_add(delta, Ordering::AcqRel);
        self.unpack(before.wrapping_add(delta))
            .unwrap_or_else(|| self.counts())
    }

    fn counts(&self) -> Counts {
        // Writers settle within a few instructions; a few re-reads find a
        // consistent total, and an empty one is the honest answer if they do not.
        (0..16)
            .find_map(|_| self.unpack(self.totals.load(Ordering::Acquire)))
            .unwrap_or_default()
    }

    fn clear(&self) {
        for slot in self.slots.iter() {
            let replaced = slot.swap(EMPTY, Ordering::AcqRel);
            self.totals.fetch_sub(packed(replaced), Ordering::AcqRel);
        }
    }

    fn unpack(&self, totals: u64) -> Option<Counts> {
        let calls = totals & FIELD_MASK;
        let failures = (totals >> FIELD_BITS) & FIELD_MASK;
        let slow = (totals >> (2 * FIELD_BITS)) & FIELD_MASK;
        let consistent = calls <= self.slots.len() as u64 && failures <= calls && slow <= calls;
        consistent.then_some(Counts {
            calls: calls as u32,
            failures: failures as u32,
            slow: slow as u32,
        })
    }
}

/// The totals' contribution of one slot code.
fn packed(code: u8) -> u64 {
    let calls = u64::from(code & RECORDED);
    let failures = u64::from((code & FAILED) >> 1);
    let slow = u64::from((code & SLOW) >> 2);
    calls | (failures << FIELD_BITS) | (slow << (2 * FIELD_BITS))
}

// ===== TimeWindow =====

/// The calls of the last `buckets * width` nanoseconds, by bucket.
///
/// Each bucket is one `u64`: a 16-bit epoch (which slice of time it counts) and
/// 16-bit counts of calls, failures and slow calls, updated by compare-and-swap.
/// A writer that finds a bucket from an older epoch starts it afresh. A bucket that
/// fills up halves its three counts, which keeps its rates and loses only weight.
///
/// NOTE: epochs are kept modulo 2^16. `latest` holds the newest full epoch, so a
/// window that went quiet is recognised as empty; a single bucket left untouched
/// for a multiple of 65,536 bucket widths while its neighbours were written could
/// still be read as current.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    buckets: Box<[AtomicU64]>,
    width: u64,
    latest: AtomicU64,
}

const EPOCH_MASK: u64 = 0xFFFF;
const COUNT_MASK: u64 = 0xFFFF;

impl TimeWindow {
    fn new(buckets: u32, width: u64) -> TimeWindow {
        TimeWindow {
            buckets: (0..buckets).map(|_| AtomicU64::new(0)).collect(),
            width,
            // No epoch is recent at first: everything reads as empty.
            latest: AtomicU64::new(u64::MAX),
        }
    }

    fn record(&self, sample: Sample, now_nanos: u64) -> Counts {
        let epoch = now_nanos / self.width;
        let bucket = &self.buckets[(epoch % self.buckets.len() as u64) as usize];
        let _ = bucket.fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
            Some(add_to_bucket(current, epoch, sample))
        });
        self.note_epoch(epoch);
        self.counts(now_nanos)
    }

    fn note_epoch(&self, epoch: u64) {
        let latest = self.latest.load(Ordering::Relaxed);
        if latest == u64::MAX || latest < epoch {
            let _ = self
                .latest
                .fetch_update(Ordering::Release, Ordering::Relaxed, |seen| {
                    (seen == u64::MAX || seen < epoch).then_some(epoch)
                });
        }
    }

    fn counts(&self, now_nanos: u64) -> Counts {
        let epoch = now_nanos / self.width;
        let span = self.buckets.len() as u64;
        let latest = self.latest.load(Ordering::Acquire);
        if latest == u64::MAX || epoch.saturating_sub(latest) >= span {
            return Counts::default();
        }
        let mut counts = Counts::default();
        for bucket in self.buckets.iter() {
            let value = bucket.load(Ordering::Acquire);
            let age = (epoch & EPOCH_MASK).wrapping_sub(value & EPOCH_MASK) & EPOCH_MASK;
            if age < span {
                counts.calls += field(value, 1);
                counts.failures += field(value, 2);
                counts.slow += field(value, 3);
            }
        }
        counts
    }

    fn clear(&self) {
        self.latest.store(u64::MAX, Ordering::Release);
        for bucket in self.buckets.iter() {
            bucket.store(0, Ordering::Release);
        }
    }
}

fn field(bucket: u64, index: u32) -> u32 {
    ((bucket >> (16 * index)) & COUNT_MASK) as u32
}

fn add_to_bucket(current: u64, epoch: u64, sample: Sample) -> u64 {
    let (mut calls, mut failures, mut slow) = if current & EPOCH_MASK == epoch & EPOCH_MASK {
        (field(current, 1), field(current, 2), field(current, 3))
    } else {
        (0, 0, 0)
    };
    if u64::from(calls) == COUNT_MASK {
        (calls, failures, slow) = (calls / 2, failures / 2, slow / 2);
    }
    calls += 1;
    failures += u32::from(sample.failure);
    slow += u32::from(sample.slow);
    (epoch & EPOCH_MASK)
        | (u64::from(calls) << 16)
        | (u64::from(failures) << 32)
        | (u64::from(slow) << 48)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAIL: Sample = Sample {
        failure: true,
        slow: false,
    };
    const OK: Sample = Sample {
        failure: false,
        slow: false,
    };
    const SLOW_OK: Sample = Sample {
        failure: false,
        slow: true,
    };

    #[test]
    fn count_window_keeps_exactly_the_last_n_calls() {
        let window = CountWindow::new(4);
        for _ in 0..4 {
            window.record(FAIL);
        }
        assert_eq!(
            window.counts(),
            Counts {
                calls: 4,
                failures: 4,
                slow: 0
            }
        );
        window.record(OK);
        window.record(SLOW_OK);
        assert_eq!(
            window.counts(),
            Counts {
                calls: 4,
                failures: 2,
                slow: 1
            }
        );
    }

    #[test]
    fn count_window_clear_empties_the_totals() {
        let window = CountWindow::new(3);
        window.record(FAIL);
        window.record(SLOW_OK);
        window.clear();
        assert_eq!(window.counts(), Counts::default());
        assert_eq!(
            window.record(FAIL),
            Counts {
                calls: 1,
                failures: 1,
                slow: 0
            }
        );
    }

    #[test]
    fn time_window_forgets_buckets_older_than_the_span() {
        let window = TimeWindow::new(4, 10);
        window.record(FAIL, 0);
        window.record(OK, 15);
        assert_eq!(
            window.counts(39),
            Counts {
                calls: 2,
                failures: 1,
                slow: 0
            }
        );
        // At 40 the first bucket (0..10) has slid out; at 50 the second too.
        assert_eq!(
            window.counts(40),
            Counts {
                calls: 1,
                failures: 0,
                slow: 0
            }
        );
        assert_eq!(window.counts(50), Counts::default());
    }

    #[test]
    fn time_window_reuses_a_bucket_for_a_new_epoch() {
        let window = TimeWindow::new(2, 10);
        window.record(FAIL, 5);
        let counts = window.record(OK, 25);
        assert_eq!(
            counts,
            Counts {
                calls: 1,
                failures: 0,
                slow: 0
            }
        );
    }

    #[test]
    fn a_full_bucket_halves_and_keeps_its_rate() {
        let window = TimeWindow::new(1, 1_000);
        for i in 0..70_000u32 {
            window.record(if i % 4 == 0 { FAIL } else { OK }, 1);
        }
        let counts = window.counts(1);
        let rate = counts.failure_rate().unwrap();
        assert!((rate - 25.0).abs() < 0.1, "rate {rate}");
        assert!(u64::from(counts.calls) <= COUNT_MASK);
    }
}
