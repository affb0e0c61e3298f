//! The tower middleware: [`CircuitBreakerLayer`] and [`CircuitBreakerService`].

mod future;
mod layer;

pub use future::ResponseFuture;
pub use layer::CircuitBreakerLayer;

use std::task::{Context, Poll};

use tokio::time::Instant;
use tower_mesh_core::{BoxError, Classify, ErrorsAsFailures};
use tower_service::Service;

use crate::{CircuitBreaker, Permit};

/// A service guarded by a [`CircuitBreaker`]. Made by [`CircuitBreakerLayer`].
///
/// # Clone
///
/// Clones share the breaker: cloning a service per request (as axum and `Buffer`
/// do) still feeds one breaker with every call's outcome.
///
/// # Errors
///
/// Errors are [`BoxError`]s. A call the breaker rejects fails with
/// [`CircuitOpenError`](crate::CircuitOpenError) (find it with
/// `error.downcast_ref::<CircuitOpenError>()`); any other error is the inner
/// service's, converted with `Into<BoxError>`.
#[derive(Debug, Clone)]
pub struct CircuitBreakerService<S, C = ErrorsAsFailures> {
    inner: S,
    breaker: CircuitBreaker,
    classifier: C,
}

impl<S, C> CircuitBreakerService<S, C> {
    /// Wraps `inner` so that `breaker` guards its calls, with `classifier` judging
    /// their outcomes.
    pub fn new(inner: S, breaker: CircuitBreaker, classifier: C) -> Self {
        CircuitBreakerService {
            inner,
            breaker,
            classifier,
        }
    }

    /// The breaker guarding this service.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
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

    /// The time a call starts, when its latency will be needed.
    #[inline]
    fn start_clock<Res, Err>(&self) -> Option<Instant>
    where
        C: Classify<Res, Err>,
    {
        self.breaker
            .needs_latency(&self.classifier)
            .then(Instant::now)
    }
}

impl<S, C, Request> Service<Request> for CircuitBreakerService<S, C>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
    C: Classify<S::Response, S::Error> + Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C>;

    /// Waits for the inner service.
    ///
    /// - `Pending` while the inner service is not ready.
    /// - Errors only with the inner service's own error: an open circuit never
    ///   fails `poll_ready`, because tower treats such errors as terminal.
    /// - Reserves nothing in the breaker; admission is decided in `call`.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    /// Asks the breaker for admission: a rejected call fails fast with
    /// [`CircuitOpenError`](crate::CircuitOpenError) without reaching the inner
    /// service; an admitted one is sent on, and its future records the outcome.
    fn call(&mut self, request: Request) -> Self::Future {
        // The common case first, built in place: a breaker that admits freely.
        if let Some(admitted) = self.breaker.free_admission() {
            let started = self.start_clock();
            return ResponseFuture::admitted(
                self.inner.call(request),
                Permit::new(self.breaker.clone(), admitted, false),
                self.classifier.clone(),
                started,
            );
        }
        match self.breaker.try_acquire() {
            Ok(permit) => {
                let started = self.start_clock();
                let future = self.inner.call(request);
                ResponseFuture::admitted(future, permit, self.classifier.clone(), started)
            }
            Err(open) => ResponseFuture::rejected(open),
        }
    }
}
