//! The overall timeout of a proxy's calls, with a timer only for the calls that
//! need one.
//!
//! A proxy bounds every attempt with its per-attempt timeout, which is never
//! longer than the overall one. So a call that is still on its first attempt is
//! already bounded, and registering a second timer for it would only cost time:
//! a timer is registered in, and removed from, the runtime's timer wheel under a
//! lock, on every call. The overall timer is needed only once a call retries or
//! waits to retry.
//!
//! [`CallTimeout`] cannot see retries, which happen inside the layers it wraps,
//! but it can see polls. Its first poll sends the first attempt and returns; only
//! if the call is still pending after a later poll is the timer armed, for the
//! deadline counted from the call's start. That bounds every case:
//!
//! - the first attempt, by its own timeout;
//! - a retry sent in a later poll, by the timer armed at the end of that poll;
//! - a backoff that began in the first poll, by the retry policy's deadline,
//!   which the proxy caps at the overall timeout: no backoff ends past it;
//! - a retry sent at once in the first poll (an attempt that failed without
//!   waiting, retried with no delay), by its own attempt timeout, counted from a
//!   moment later than the call's start by the length of that one poll: far
//!   below the timer wheel's millisecond resolution.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::timeout::error::Elapsed;
use tower_layer::Layer;
use tower_mesh_core::BoxError;
use tower_service::Service;

/// Bounds each call to `timeout`, failing it with [`Elapsed`]; see the module
/// docs for when its timer is armed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallTimeoutLayer {
    timeout: Duration,
}

impl CallTimeoutLayer {
    pub(crate) fn new(timeout: Duration) -> Self {
        CallTimeoutLayer { timeout }
    }
}

impl<S> Layer<S> for CallTimeoutLayer {
    type Service = CallTimeout<S>;

    fn layer(&self, inner: S) -> CallTimeout<S> {
        CallTimeout {
            inner,
            timeout: self.timeout,
        }
    }
}

/// The service made by [`CallTimeoutLayer`].
#[derive(Debug, Clone)]
pub(crate) struct CallTimeout<S> {
    inner: S,
    timeout: Duration,
}

impl<S, Req> Service<Req> for CallTimeout<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = CallTimeoutFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        CallTimeoutFuture {
            inner: self.inner.call(request),
            timer: None,
            deadline: Instant::now() + self.timeout,
            first_poll: true,
        }
    }
}

pin_project! {
    /// The response future of [`CallTimeout`].
    pub(crate) struct CallTimeoutFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        timer: Option<Sleep>,
        deadline: Instant,
        first_poll: bool,
    }
}

impl<F, T, E> Future for CallTimeoutFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result.map_err(Into::into));
        }
        if std::mem::take(this.first_poll) {
            return Poll::Pending;
        }
        if this.timer.is_none() {
            this.timer
                .set(Some(tokio::time::sleep_until(*this.deadline)));
        }
        if let Some(timer) = this.timer.as_pin_mut() {
            ready!(timer.poll(cx));
        }
        Poll::Ready(Err(Elapsed::new().into()))
    }
}
