//! Which failures are retried, and how a request is copied for a retry.

use std::any::Any;
use std::error::Error;
use std::fmt;
use std::time::Duration;

use tower_mesh_breaker::CircuitOpenError;
use tower_mesh_core::BoxError;

/// What a [`Retryable`] predicate says of one failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Retry after the delay the policy's [`Backoff`](crate::Backoff) gives.
    Backoff,
    /// Retry after this delay instead (still capped at the policy's
    /// [`max_delay`](crate::RetryPolicyBuilder::max_delay)).
    After(Duration),
    /// Do not retry: the failure is returned as it is.
    Stop,
}

/// Decides whether a call that the classifier judged a failure is worth retrying.
///
/// Only calls classified as [`Outcome::Failure`](tower_mesh_core::Outcome::Failure)
/// reach the predicate; successes and ignored outcomes are never retried. `retry`
/// is the number of the retry that would follow, from 1.
///
/// Closures get this trait through [`RetryPolicy::retry_if`](crate::RetryPolicy::retry_if)
/// and [`RetryPolicy::delay_fn`](crate::RetryPolicy::delay_fn); implement it
/// directly for anything richer.
pub trait Retryable<Res, Err> {
    /// Judges one failed call.
    fn check(&self, retry: u32, result: Result<&Res, &Err>) -> RetryDecision;
}

/// The default predicate: every failure is retried after the policy's backoff.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AnyFailure;

impl<Res, Err> Retryable<Res, Err> for AnyFailure {
    fn check(&self, _retry: u32, _result: Result<&Res, &Err>) -> RetryDecision {
        RetryDecision::Backoff
    }
}

/// Retries the failures a closure picks out. Made by
/// [`RetryPolicy::retry_if`](crate::RetryPolicy::retry_if).
#[derive(Clone, Copy)]
pub struct RetryIf<F> {
    pub(crate) predicate: F,
}

impl<Res, Err, F> Retryable<Res, Err> for RetryIf<F>
where
    F: Fn(Result<&Res, &Err>) -> bool,
{
    fn check(&self, _retry: u32, result: Result<&Res, &Err>) -> RetryDecision {
        if (self.predicate)(result) {
            RetryDecision::Backoff
        } else {
            RetryDecision::Stop
        }
    }
}

/// Picks the delay of each retry, or refuses it, from the retry number and the
/// failed call. Made by [`RetryPolicy::delay_fn`](crate::RetryPolicy::delay_fn).
#[derive(Clone, Copy)]
pub struct DelayFn<F> {
    pub(crate) delay: F,
}

impl<Res, Err, F> Retryable<Res, Err> for DelayFn<F>
where
    F: Fn(u32, Result<&Res, &Err>) -> Option<Duration>,
{
    fn check(&self, retry: u32, result: Result<&Res, &Err>) -> RetryDecision {
        match (self.delay)(retry, result) {
            Some(delay) => RetryDecision::After(delay),
            None => RetryDecision::Stop,
        }
    }
}

impl<F> fmt::Debug for RetryIf<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryIf").finish_non_exhaustive()
    }
}

impl<F> fmt::Debug for DelayFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DelayFn").finish_non_exhaustive()
    }
}

// ===== replaying requests =====

/// Makes the copy of a request that a retry will send.
///
/// A copy is made before each attempt, because the service consumes the request
/// it is called with. Returning `None` means the request cannot be sent twice (a
/// streaming body already partly read, say): the attempt still runs, and its
/// failure is returned without a retry.
pub trait ReplayRequest<Req> {
    /// A copy of `request` to send again, or `None` when it cannot be replayed.
    fn replay(&self, request: &Req) -> Option<Req>;
}

/// The default: replays requests by cloning them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CloneRequest;

impl<Req: Clone> ReplayRequest<Req> for CloneRequest {
    fn replay(&self, request: &Req) -> Option<Req> {
        Some(request.clone())
    }
}

/// Replays requests with a closure. Made by
/// [`RetryPolicy::replay_with`](crate::RetryPolicy::replay_with).
#[derive(Clone, Copy)]
pub struct ReplayWith<F> {
    pub(crate) replay: F,
}

impl<Req, F> ReplayRequest<Req> for ReplayWith<F>
where
    F: Fn(&Req) -> Option<Req>,
{
    fn replay(&self, request: &Req) -> Option<Req> {
        (self.replay)(request)
    }
}

impl<F> fmt::Debug for ReplayWith<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayWith").finish_non_exhaustive()
    }
}

// ===== open circuits =====

/// Whether `error` is a rejection by an open circuit breaker, which a retry
/// through the same breaker would only meet again.
///
/// Recognises a [`CircuitOpenError`] itself and any boxed error
/// ([`BoxError`], `Box<dyn Error + Send>`, `Box<dyn Error>`) with one in its
/// `source()` chain.
pub fn is_circuit_open<E: 'static>(error: &E) -> bool {
    let any: &dyn Any = error;
    if any.is::<CircuitOpenError>() {
        return true;
    }
    if let Some(boxed) = any.downcast_ref::<BoxError>() {
        return chain_has_open_circuit(&**boxed);
    }
    if let Some(boxed) = any.downcast_ref::<Box<dyn Error + Send + 'static>>() {
        return chain_has_open_circuit(&**boxed);
    }
    if let Some(boxed) = any.downcast_ref::<Box<dyn Error + 'static>>() {
        return chain_has_open_circuit(&**boxed);
    }
    false
}

fn chain_has_open_circuit(mut error: &(dyn Error + 'static)) -> bool {
    loop {
        if error.is::<CircuitOpenError>() {
            return true;
        }
        match error.source() {
            Some(source) => error = source,
            None => return false,
        }
    }
}
