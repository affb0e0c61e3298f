//! Logging and metrics for retries, budget refusals and give-ups.
//!
//! Every retry and every give-up is a `tracing` `debug!` event; with the `metrics`
//! feature each also bumps a counter. Nothing here runs on the path where the
//! first attempt succeeds, except the attempt counter when `metrics` is on.

use std::time::Duration;

use tracing::debug;

/// Why a failed call was returned without another retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GiveUp {
    /// The error was a rejection by an open circuit breaker.
    CircuitOpen,
    /// The retryable predicate declined the failure.
    NotRetryable,
    /// Every allowed retry was made.
    Exhausted,
    /// The request could not be copied for a retry.
    NotReplayable,
    /// The next retry would start after the deadline.
    Deadline,
    /// The retry budget was spent.
    Budget,
}

impl GiveUp {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            GiveUp::CircuitOpen => "circuit open",
            GiveUp::NotRetryable => "not retryable",
            GiveUp::Exhausted => "retries exhausted",
            GiveUp::NotReplayable => "request not replayable",
            GiveUp::Deadline => "deadline",
            GiveUp::Budget => "budget exhausted",
        }
    }
}

/// One attempt, first or retry, is about to be sent.
#[inline]
pub(crate) fn attempt(policy: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!("tower_mesh_retry_attempts_total", "policy" => policy).increment(1);
    let _ = policy;
}

/// A retry was decided: it will be sent after `delay`.
pub(crate) fn retry(policy: &'static str, attempt: u32, delay: Duration, reason: &'static str) {
    debug!(policy, attempt, ?delay, reason, "retrying after a failure");
    #[cfg(feature = "metrics")]
    metrics::counter!("tower_mesh_retry_retries_total", "policy" => policy).increment(1);
}

/// A failed call is returned as it is after `attempts` attempts.
pub(crate) fn give_up(policy: &'static str, attempts: u32, why: GiveUp) {
    if why == GiveUp::Budget {
        debug!(
            policy,
            attempts, "retry budget exhausted; returning the last outcome"
        );
        #[cfg(feature = "metrics")]
        metrics::counter!("tower_mesh_retry_budget_refusals_total", "policy" => policy)
            .increment(1);
    }
    let reason = why.as_str();
    debug!(policy, attempts, reason, "giving up on retries");
    #[cfg(feature = "metrics")]
    metrics::counter!("tower_mesh_retry_give_ups_total", "policy" => policy, "reason" => reason)
        .increment(1);
}
