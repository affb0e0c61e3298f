//! The tower middleware: [`RetryLayer`] and [`Retry`].

mod future;
mod layer;

pub use future::ResponseFuture;
pub use layer::RetryLayer;

use std::task::{Context, Poll};

use tower_mesh_core::{Classify, ErrorsAsFailures};
use tower_service::Service;

use crate::retryable::{AnyFailure, CloneRequest, ReplayRequest, Retryable};
use crate::RetryPolicy;

/// A service whose failed calls are retried by a [`RetryPolicy`]. Made by
/// [`RetryLayer`].
///
/// Each call clones the policy (to count that request's attempts), the inner
/// service (to send retries on) and, through the policy's
/// [`ReplayRequest`] hook, the request. When the first attempt succeeds nothing
/// else happens: no clock is read unless a deadline, a budget or the classifier
/// needs one, and nothing is allocated.
///
/// # Clone
///
/// Clones share the policy's budget, so a clone per request (as axum and
/// `Buffer` make) still spends one budget.
///
/// # Errors
///
/// The inner service's own errors, unchanged: the last attempt's error when no
/// retry is left, or an error from the inner `poll_ready` before a retry.
#[derive(Debug, Clone)]
pub struct Retry<S, C = ErrorsAsFailures, R = AnyFailure, K = CloneRequest> {
    inner: S,
    policy: RetryPolicy<C, R, K>,
}

impl<S, C, R, K> Retry<S, C, R, K> {
    /// Wraps `inner` so that `policy` retries its failed calls.
    pub fn new(inner: S, policy: RetryPolicy<C, R, K>) -> Self {
        Retry { inner, policy }
    }

    /// The retry policy.
    pub fn policy(&self) -> &RetryPolicy<C, R, K> {
        &self.policy
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// Sends `request` as [`call`](Service::call) does, but consumes the
    /// service: it moves into the future, which sends the retries on it, so no
    /// clone is made. For a clone made for one call (as `oneshot` on a clone
    /// does), this saves the clone that `call` makes to keep the service usable.
    ///
    /// As with `call`, the service must have been polled ready.
    ///
    /// ```
    /// use std::future::poll_fn;
    /// use tower::{service_fn, Service};
    /// use tower_mesh_retry::{Retry, RetryPolicy};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let echo = service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n) });
    /// let mut retry = Retry::new(echo, RetryPolicy::default());
    /// poll_fn(|cx| retry.poll_ready(cx)).await.unwrap();
    /// assert_eq!(retry.call_once(7).await.unwrap(), 7);
    /// # }
    /// ```
    #[inline(always)]
    pub fn call_once<Request>(self, request: Request) -> ResponseFuture<S, Request, C, R, K>
    where
        S: Service<Request>,
        C: Classify<S::Response, S::Error>,
        K: ReplayRequest<Request>,
    {
        let Retry {
            mut inner,
            mut policy,
        } = self;
        let needs_latency = policy.needs_latency();
        policy.begin_request(needs_latency);
        let replay = policy.replay(&request);
        let attempt = inner.call(request);
        ResponseFuture::new(attempt, inner, policy, replay, needs_latency)
    }
}

impl<S, C, R, K, Request> Service<Request> for Retry<S, C, R, K>
where
    S: Service<Request> + Clone,
    S::Error: 'static,
    C: Classify<S::Response, S::Error> + Clone,
    R: Retryable<S::Response, S::Error> + Clone,
    K: ReplayRequest<Request> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ResponseFuture<S, Request, C, R, K>;

    /// Waits for the inner service.
    ///
    /// - `Pending` while the inner service is not ready.
    /// - Errors only with the inner service's own error.
    /// - Reserves nothing: the budget is consulted only when a call fails.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    /// Sends the first attempt on the service that was polled ready, and keeps a
    /// clone of the service and a copy of the request for retries.
    #[inline(always)]
    fn call(&mut self, request: Request) -> Self::Future {
        let needs_latency = self.policy.needs_latency();
        let progress = self.policy.start_request(needs_latency);
        let replay = self.policy.replay(&request);
        let spare = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, spare);
        let attempt = ready.call(request);
        let policy = self.policy.for_request(progress);
        ResponseFuture::new(attempt, ready, policy, replay, needs_latency)
    }
}
