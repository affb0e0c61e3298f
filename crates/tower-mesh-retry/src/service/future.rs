use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{sleep, Sleep};
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
    /// removed with it), and no further attempt is sent. A retry already counted
    /// against the budget stays counted.
    pub struct ResponseFuture<S, Request, C, R, K>
    where
        S: Service<Request>,
    {
        #[pin]
        attempt: S::Future,
        phase: Phase<Request>,
        service: S,
        policy: RetryPolicy<C, R, K>,
        replay: Option<Request>,
        needs_latency: bool,
    }
}

/// What the future is doing now.
enum Phase<Request> {
    /// Waiting for the attempt in `attempt`.
    Attempting,
    /// Waiting out the delay before a retry of `request`. The timer is boxed so
    /// that a future that never retries stays small; it is allocated only for a
    /// retry.
    Backing {
        delay: Pin<Box<Sleep>>,
        request: Request,
    },
    /// Waiting for the service to be ready for the retry of `request`.
    Readying { request: Request },
    /// Finished; polling again is a caller error.
    Done,
}

impl<S, Request, C, R, K> ResponseFuture<S, Request, C, R, K>
where
    S: Service<Request>,
{
    pub(super) fn new(
        attempt: S::Future,
        service: S,
        policy: RetryPolicy<C, R, K>,
        replay: Option<Request>,
    ) -> Self
    where
        C: Classify<S::Response, S::Error>,
    {
        let needs_latency = policy.needs_latency();
        ResponseFuture {
            attempt,
            phase: Phase::Attempting,
            service,
            policy,
            replay,
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

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.phase {
                Phase::Attempting => {
                    let result = ready!(this.attempt.as_mut().poll(cx));
                    let replayable = this.replay.is_some();
                    let retry = this.policy.after_attempt(result.as_ref(), replayable);
                    match (retry, this.replay.take()) {
                        (Some(delay), Some(request)) => *this.phase = backing(delay, request),
                        _ => {
                            *this.phase = Phase::Done;
                            return Poll::Ready(result);
                        }
                    }
                }
                Phase::Backing { delay, .. } => {
                    ready!(delay.as_mut().poll(cx));
                    *this.phase = match std::mem::replace(this.phase, Phase::Done) {
                        Phase::Backing { request, .. } => Phase::Readying { request },
                        other => other,
                    };
                }
                Phase::Readying { .. } => {
                    if let Err(error) = ready!(this.service.poll_ready(cx)) {
                        *this.phase = Phase::Done;
                        return Poll::Ready(Err(error));
                    }
                    let Phase::Readying { request } =
                        std::mem::replace(this.phase, Phase::Attempting)
                    else {
                        continue;
                    };
                    *this.replay = this.policy.replay(&request);
                    this.policy.begin_retry(*this.needs_latency);
                    this.attempt.set(this.service.call(request));
                }
                Phase::Done => return Poll::Pending,
            }
        }
    }
}

/// The phase after a retry was decided: a timer, or straight to readiness when
/// there is nothing to wait for.
fn backing<Request>(delay: Duration, request: Request) -> Phase<Request> {
    if delay.is_zero() {
        return Phase::Readying { request };
    }
    Phase::Backing {
        delay: Box::pin(sleep(delay)),
        request,
    }
}

impl<S, Request, C, R, K> fmt::Debug for ResponseFuture<S, Request, C, R, K>
where
    S: Service<Request>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let phase = match self.phase {
            Phase::Attempting => "attempting",
            Phase::Backing { .. } => "backing off",
            Phase::Readying { .. } => "readying",
            Phase::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("phase", &phase)
            .field("retries", &self.policy.retries())
            .finish_non_exhaustive()
    }
}
