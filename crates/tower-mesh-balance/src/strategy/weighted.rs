//! Smooth weighted round robin as earliest-deadline-first scheduling.
//!
//! An endpoint of weight `w` that has been picked `k` times has its next turn at
//! the virtual time `(2k + 1) / 2w`: half a period in, then every `1 / w`. Picking
//! the earliest deadline gives every endpoint exactly `w` picks in each stretch of
//! `sum(weights)` picks, and spreads a heavy endpoint's picks across the stretch.
//! Deadlines are compared as exact fractions, so ties are broken by index alone
//! and the order is the same on every run.

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
}

impl Turn {
    /// The deadline's numerator over the denominator `2 * weight`.
    fn numerator(&self) -> u128 {
        2 * u128::from(self.picks) + 1
    }
}

impl Ord for Turn {
    fn cmp(&self, other: &Self) -> Ordering {
        // a / 2wa against b / 2wb, cross-multiplied so no precision is lost.
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
            let Reverse(mut turn) = self.heap.pop()?;
            turn.picks += 1;
            self.heap.push(Reverse(turn));
            if view.is_available(turn.index as usize) {
                return Some(turn.index as usize);
            }
        }
        None
    }

    fn rebuild<V: EndpointView + ?Sized>(&mut self, view: &V) {
        let turns = (0..view.len()).map(|index| {
            Reverse(Turn {
                picks: 0,
                weight: view.weight(index).max(1),
                index: index as u32,
            })
        });
        self.heap = turns.collect();
        self.stale = false;
        self.built_for = view.len();
    }
}
