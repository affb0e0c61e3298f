use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_mesh_core::Classify;
use tower_service::Service;

use crate::retryable::{ReplayRequest, Retryable};
use crate::RetryPolicy;

pin_project! {
    /// The response future of [`Retry`](super::Retry).
    ///
    /// # Cancel safety
    ///
    /// Dropping it cancels the attempt in flight or the pending delay (its timer is
    /// removed with it), and no further attempt is sent. A retry counted against
    /// the budget but not sent yet is given back.
    ///
    /// Polling it again after it returned `Ready` is a caller error: it then stays
    /// `Pending`.
    #[project = Projection]
    pub struct ResponseFuture<S, Request, C, R, K>
    where
        S: Service<Request>,
    {
        #[pin]
        attempt: S::Future,
        phase: Phase,
        // The copy of the request that the next retry will send.
        replay: Option<Request>,
        // Boxed so that a future that never retries stays small; made at the first
        // retry and reset for later ones.
        timer: Option<Pin<Box<Sleep>>>,
        service: S,
        policy: RetryPolicy<C, R, K>,
        needs_latency: bool,
    }

    impl<S, Request, C, R, K> PinnedDrop for ResponseFuture<S, Request, C, R, K>
    where
        S: Service<Request>,
    {
        fn drop(this: Pin<&mut Self>) {
            // Dropped while waiting to retry: the retry never goes out.
            this.project().policy.refund_unsent();
        }
    }
}

/// What the future is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The attempt in `attempt`.
    Attempting,
    /// The timer before a retry.
    BackingOff,
    /// The service's readiness for a retry.
    Readying,
    /// Nothing: the output was returned, and polling again is a caller error.
    Done,
}

impl<S, Request, C, R, K> ResponseFuture<S, Request, C, R, K>
where
    S: Service<Request>,
{
    #[inline(always)]
    pub(super) fn new(
        attempt: S::Future,
        service: S,
        policy: RetryPolicy<C, R, K>,
        replay: Option<Request>,
        needs_latency: bool,
    ) -> Self {
        ResponseFuture {
            attempt,
            phase: Phase::Attempting,
            replay,
            timer: None,
            service,
            policy,
            needs_latency,
        }
    }
}

impl<S, Request, C, R, K> Future for ResponseFuture<S, Request, C, R, K>
where
    S: Service<Request>,
    S::Error: 'static,
    C: Classify<S::Response, S::Error>,
    R: Retryable<S::Response, S::Error>,
    K: ReplayRequest<Request>,
{
    type Output = Result<S::Response, S::Error>;

    /// Only an attempt's outcome is judged here; everything a retry needs runs
    /// out of line, so that a first attempt that succeeds stays cheap.
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            if *this.phase != Phase::Attempting {
                ready!(poll_retry(&mut this, cx))?;
            }
            let result = ready!(this.attempt.as_mut().poll(cx));
            let replayable = this.replay.is_some();
            match this.policy.after_attempt(result.as_ref(), replayable) {
                Some(delay) => back_off(&mut this, delay),
                None => {
                    *this.phase = Phase::Done;
                    return Poll::Ready(result);
                }
            }
        }
    }
}

/// Starts the wait before a retry.
fn back_off<S, Request, C, R, K>(this: &mut Projection<'_, S, Request, C, R, K>, delay: Duration)
where
    S: Service<Request>,
{
    if delay.is_zero() {
        *this.phase = Phase::Readying;
        return;
    }
    let deadline = Instant::now() + delay;
    match this.timer {
        Some(timer) => timer.as_mut().reset(deadline),
        None => *this.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
    }
    *this.phase = Phase::BackingOff;
}

/// Waits out the delay and the service's readiness, then sends the retry;
/// `Ready(Ok)` once the retry's attempt is in `attempt`.
#[inline(never)]
fn poll_retry<S, Request, C, R, K>(
    this: &mut Projection<'_, S, Request, C, R, K>,
    cx: &mut Context<'_>,
) -> Poll<Result<(), S::Error>>
where
    S: Service<Request>,
    K: ReplayRequest<Request>,
{
    if *this.phase == Phase::BackingOff {
        if let Some(timer) = this.timer {
            ready!(timer.as_mut().poll(cx));
        }
        *this.phase = Phase::Readying;
    }
    if *this.phase == Phase::Done {
        return Poll::Pending;
    }
    if let Err(error) = ready!(this.service.poll_ready(cx)) {
        *this.phase = Phase::Done;
        return Poll::Ready(Err(error));
    }
    let Some(request) = this.replay.take() else {
        // Unreachable: a retry is only decided when a copy is at hand.
        *this.phase = Phase::Done;
        return Poll::Pending;
    };
    *this.replay = this.policy.replay(&request);
    this.policy.begin_retry(*this.needs_latency);
    this.attempt.set(this.service.call(request));
    *this.phase = Phase::Attempting;
    Poll::Ready(Ok(()))
}

impl<S, Request, C, R, K> fmt::Debug for ResponseFuture<S, Request, C, R, K>
where
    S: Service<Request>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("phase", &self.phase)
            .field("retries", &self.policy.retries())
            .finish_non_exhaustive()
    }
}
