//! Deadlines of the balancer's own: when an ejection ends, when a failed endpoint
//! is polled again. One `Sleep` covers the nearest of them.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::task::Context;

use tokio::time::{sleep_until, Instant, Sleep};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// Poll a failed endpoint's `poll_ready` again.
    RetryReadiness,
    /// Let an ejected endpoint take probe calls.
    EndEjection,
}

#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u64, Timer)>>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Timers {
    pub(crate) fn schedule(&mut self, at: Instant, serial: u64, timer: Timer) {
        self.heap.push(Reverse((at, serial, timer)));
    }

    /// Takes every timer that is due, and arms the sleep for the next one.
    pub(crate) fn poll_due(&mut self, cx: &mut Context<'_>) -> Vec<(u64, Timer)> {
        let mut due = Vec::new();
        if self.heap.is_empty() {
            return due;
        }
        let now = Instant::now();
        while let Some(&Reverse((at, serial, timer))) = self.heap.peek() {
            if at <= now {
                self.heap.pop();
                due.push((serial, timer));
                continue;
            }
            if !self.arm(at, cx) {
                break;
            }
            // The sleep fired: time moved past `at` since `now` was read.
            self.heap.pop();
            due.push((serial, timer));
        }
        due
    }

    /// Arms the sleep for `at`; `true` if it has already fired.
    fn arm(&mut self, at: Instant, cx: &mut Context<'_>) -> bool {
        let sleep = self.sleep.get_or_insert_with(|| Box::pin(sleep_until(at)));
        if sleep.deadline() != at {
            sleep.as_mut().reset(at);
        }
        sleep.as_mut().poll(cx).is_ready()
    }
}
