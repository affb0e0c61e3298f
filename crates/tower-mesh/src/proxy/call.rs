//! One call through a proxy: counted, bounded by the overall timeout (with a
//! timer only for the calls that need one), and sent through a clone of the
//! retry layer's stack.
//!
//! A proxy bounds every attempt with its per-attempt timeout, which is never
//! longer than the overall one. So a call that is still on its first attempt is
//! already bounded, and registering a second timer for it would only cost time:
//! a timer is registered in, and removed from, the runtime's timer wheel under a
//! lock, on every call. The overall timer is needed only once a call retries or
//! waits to retry.
//!
//! [`CallTimeoutFuture`] cannot see retries, which happen inside the future it
//! wraps, but it can see polls. Its first poll sends the first attempt and returns; only
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

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::timeout::error::Elapsed;
use tower_mesh_core::{BoxError, Classify};
use tower_mesh_retry::{ReplayRequest, Retry, Retryable};
use tower_service::Service;

use super::count::Striped;
use super::ProxyFuture;

/// Starts a proxy's calls on clones of its retry layer, `retry`, over the
/// attempt stack `A`.
pub(crate) struct Calls<A, C, R, K> {
    pub(crate) retry: Retry<A, C, R, K>,
    pub(crate) timeout: Duration,
    pub(crate) requests: &'static Striped,
}

impl<A, C, R, K> Calls<A, C, R, K> {
    /// Sends `request`. A stack that is ready at once (the common case) is
    /// called at once, and the call's future is all the returned allocation
    /// holds; one that is not is awaited, within the overall timeout, with the
    /// call's own waker.
    pub(crate) fn send<Req>(&self, request: Req) -> ProxyFuture<A::Response>
    where
        A: Service<Req, Error = BoxError> + Clone + Send + 'static,
        A::Future: Send + 'static,
        A::Response: Send + 'static,
        C: Classify<A::Response, BoxError> + Clone + Send + 'static,
        R: Retryable<A::Response, BoxError> + Clone + Send + 'static,
        K: ReplayRequest<Req> + Clone + Send + 'static,
        Req: Send + 'static,
    {
        let mut retry = self.retry.clone();
        let deadline = Instant::now() + self.timeout;
        let requests = self.requests;
        match retry.poll_ready(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(Ok(())) => Box::pin(start(retry, request, deadline, requests)),
            Poll::Ready(Err(error)) => Box::pin(std::future::ready(Err(error))),
            Poll::Pending => Box::pin(async move {
                let ready = poll_fn(|cx| retry.poll_ready(cx));
                match tokio::time::timeout_at(deadline, ready).await {
                    Ok(result) => result?,
                    Err(_) => return Err(Elapsed::new().into()),
                }
                start(retry, request, deadline, requests).await
            }),
        }
    }
}

impl<A: Clone, C: Clone, R: Clone, K: Clone> Clone for Calls<A, C, R, K> {
    fn clone(&self) -> Self {
        Calls {
            retry: self.retry.clone(),
            timeout: self.timeout,
            requests: self.requests,
        }
    }
}

/// Counts the call and sends its first attempt.
fn start<A, C, R, K, Req>(
    retry: Retry<A, C, R, K>,
    request: Req,
    deadline: Instant,
    requests: &Striped,
) -> CallTimeoutFuture<tower_mesh_retry::ResponseFuture<A, Req, C, R, K>>
where
    A: Service<Req>,
    C: Classify<A::Response, A::Error>,
    K: ReplayRequest<Req>,
{
    requests.add_one();
    CallTimeoutFuture {
        inner: retry.call_once(request),
        timer: None,
        deadline,
        first_poll: true,
    }
}

pin_project! {
    /// A call's future, failed with [`Elapsed`] at `deadline`.
    pub(crate) struct CallTimeoutFuture<F> {
        #[pin]
        inner: F,
        // Boxed: most calls never arm it, and a timer is large.
        timer: Option<Pin<Box<Sleep>>>,
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
        let this = self.project();
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result.map_err(Into::into));
        }
        if std::mem::take(this.first_poll) {
            return Poll::Pending;
        }
        let deadline = *this.deadline;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(Err(Elapsed::new().into()))
    }
}
