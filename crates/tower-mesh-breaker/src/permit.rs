//! [`Permit`]: one admitted call's right, and duty, to report its outcome.

use std::fmt;
use std::time::Duration;

use tower_mesh_core::Outcome;

use crate::state::Word;
use crate::{CircuitBreaker, CircuitState};

/// Permission to run one call, from [`CircuitBreaker::try_acquire`].
///
/// Report the call's outcome with [`record`](Permit::record),
/// [`success`](Permit::success) or [`failure`](Permit::failure); each consumes the
/// permit, so an outcome is recorded at most once. A permit dropped without a
/// report (a cancelled call) records nothing and gives back its half-open probe
/// slot, so cancellations can never leave a breaker short of probes.
///
/// An outcome reported after the breaker changed state (the call was admitted
/// while closed, and the breaker opened meanwhile) is stale and not counted.
///
/// # Example
///
/// ```
/// use tower_mesh_breaker::{CircuitBreaker, CircuitBreakerConfig};
///
/// let breaker = CircuitBreaker::new("search", CircuitBreakerConfig::default());
/// match breaker.try_acquire() {
///     Ok(permit) => {
///         let answer: Result<u32, ()> = Ok(7); // run the call here
///         if answer.is_ok() { permit.success() } else { permit.failure() }
///     }
///     Err(open) => eprintln!("skipped: {open}"),
/// }
/// ```
#[must_use = "a permit records nothing until it is given an outcome"]
pub struct Permit {
    breaker: CircuitBreaker,
    admitted: Word,
    duty: Duty,
}

/// What a permit still owes its breaker.
///
/// A full word, like the permit's other fields: a permit is moved a few times per
/// call (into a `Result`, then into a response future), and a narrow field makes
/// each move a mix of small stores and wide loads that the processor cannot
/// forward, which measurably slows the closed-state path.
#[repr(u64)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Duty {
    /// Report the outcome of a call admitted without a probe slot.
    Call,
    /// Report the outcome of a half-open probe, freeing its slot.
    Probe,
    /// Nothing: the outcome was reported, or the permit was detached.
    Settled,
}

impl Permit {
    #[inline]
    pub(crate) fn new(breaker: CircuitBreaker, admitted: Word, probe: bool) -> Self {
        let duty = if probe { Duty::Probe } else { Duty::Call };
        Permit {
            breaker,
            admitted,
            duty,
        }
    }

    /// Marks the permit settled and says whether it held a probe slot.
    fn settle(&mut self) -> bool {
        std::mem::replace(&mut self.duty, Duty::Settled) == Duty::Probe
    }

    /// The state the call was admitted in.
    pub fn admitted_in(&self) -> CircuitState {
        self.admitted.state()
    }

    /// Records the call's outcome and latency.
    #[inline]
    pub fn record(mut self, outcome: Outcome, latency: Duration) {
        let probe = self.settle();
        self.breaker
            .on_outcome(self.admitted, probe, outcome, latency);
    }

    /// Records the outcome unless one was already recorded, without consuming the
    /// permit: for futures that keep their permit in place until they are dropped.
    #[inline]
    pub(crate) fn record_once(&mut self, outcome: Outcome, latency: Duration) {
        if self.duty != Duty::Settled {
            let probe = self.settle();
            self.breaker
                .on_outcome(self.admitted, probe, outcome, latency);
        }
    }

    /// Records a success.
    pub fn success(self) {
        self.record(Outcome::Success, Duration::ZERO);
    }

    /// Records a failure.
    pub fn failure(self) {
        self.record(Outcome::Failure, Duration::ZERO);
    }

    /// Drops the permit without recording, keeping any probe slot it holds, for
    /// the classic `can_execute` / `record_*` API that reports separately.
    pub(crate) fn detach(mut self) {
        self.settle();
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.duty != Duty::Settled {
            let probe = self.settle();
            self.breaker
                .on_outcome(self.admitted, probe, Outcome::Ignored, Duration::ZERO);
        }
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("breaker", &self.breaker.name())
            .field("admitted_in", &self.admitted.state())
            .field("duty", &self.duty)
            .finish()
    }
}
