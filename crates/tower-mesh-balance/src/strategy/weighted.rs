//! Smooth weighted round robin as earliest-deadline-first scheduling.
//!
//! Endpoint `j` of `n`, of weight `w`, picked `k` times so far, has its next turn
//! at the virtual time `(k + φ) / w`, where its phase `φ = (2j + 1) / 2n` lies in
//! `(0, 1)`. Every endpoint thus has exactly `w` turns in each unit of virtual
//! time, so picking the earliest deadline gives it exactly `w` picks in each
//! stretch of `sum(weights)` picks, spread across the stretch; the distinct phases
//! keep light endpoints from all falling due at the same moment. Deadlines are
//! compared as exact fractions, so the order is the same on every run.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use super::EndpointView;

/// The schedule of the `Weighted` strategy.
#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    heap: BinaryHeap<Reverse<Turn>>,
    stale: bool,
    built_for: usize,
}

/// One endpoint's next turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Turn {
    picks: u64,
    weight: u32,
    index: u32,
    /// Twice the number of endpoints, shared by every turn of one schedule.
    periods: u64,
}

impl Turn {
    /// The deadline's numerator over the denominator `2n * weight`.
    fn numerator(&self) -> u128 {
        let phase = 2 * u128::from(self.index) + 1;
        u128::from(self.periods) * u128::from(self.picks) + phase
    }
}

impl Ord for Turn {
    fn cmp(&self, other: &Self) -> Ordering {
        // a / (2n wa) against b / (2n wb), cross-multiplied so no precision is lost.
        let left = self.numerator() * u128::from(other.weight);
        let right = other.numerator() * u128::from(self.weight);
        left.cmp(&right).then(self.index.cmp(&other.index))
    }
}

impl PartialOrd for Turn {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Deadlines {
    /// Forgets the schedule; the next pick starts a new one from the current set.
    pub(crate) fn invalidate(&mut self) {
        self.stale = true;
    }

    pub(crate) fn pick<V: EndpointView + ?Sized>(&mut self, view: &V) -> Option<usize> {
        if self.stale || self.built_for != view.len() || self.heap.is_empty() {
            self.rebuild(view);
        }
        // Each endpoint is looked at most once; an unavailable one loses its turn.
        for _ in 0..self.heap.len() {
            // Advancing the earliest turn in place costs one sift instead of two.
            let index = {
                let mut earliest = self.heap.peek_mut()?;
                earliest.0.picks += 1;
                earliest.0.index as usize
            };
            if view.is_available(index) {
                return Some(index);
            }
        }
        None
    }

    fn rebuild<V: EndpointView + ?Sized>(&mut self, view: &V) {
        let periods = 2 * view.len() as u64;
        let turns = (0..view.len()).map(|index| {
            Reverse(Turn {
                picks: 0,
                weight: view.weight(index).max(1),
                index: index as u32,
                periods,
            })
        });
        self.heap = turns.collect();
        self.stale = false;
        self.built_for = view.len();
    }
}
