//! [`FaultLayer`], [`HttpFaultLayer`] and the service and future they make.

use std::fmt;
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tokio::time::{sleep, Sleep};
use tower_layer::Layer;
use tower_mesh_core::BoxError;
use tower_service::Service;

use crate::config::AbortKind;
use crate::error::FaultInjectedError;
use crate::handle::FaultHandle;

// ===== how aborted requests end =====

/// Turns an abort into the call's result.
pub trait Abort<Res>: Clone {
    /// The result of a request aborted as `kind` says.
    fn abort(&self, kind: AbortKind) -> Result<Res, BoxError>;
}

/// Ends every aborted request with a [`FaultInjectedError`].
#[derive(Debug, Clone, Copy, Default)]
pub struct AbortWithError;

impl<Res> Abort<Res> for AbortWithError {
    fn abort(&self, kind: AbortKind) -> Result<Res, BoxError> {
        let status = match kind {
            AbortKind::Status(status) => Some(status),
            AbortKind::Error => None,
        };
        Err(FaultInjectedError { status }.into())
    }
}

/// Ends aborted HTTP requests with an empty response of the configured status
/// (and those configured as [`AbortKind::Error`] with a [`FaultInjectedError`]).
#[cfg(feature = "http")]
#[derive(Debug, Clone, Copy, Default)]
pub struct AbortWithStatus;

#[cfg(feature = "http")]
impl<B: Default> Abort<http::Response<B>> for AbortWithStatus {
    fn abort(&self, kind: AbortKind) -> Result<http::Response<B>, BoxError> {
        let AbortKind::Status(status) = kind else {
            return AbortWithError.abort(kind);
        };
        let mut response = http::Response::new(B::default());
        // Validated by the builder to be in 100..=999.
        *response.status_mut() = http::StatusCode::from_u16(status)?;
        Ok(response)
    }
}

// ===== layers =====

/// Injects faults into the requests of any service: aborts (as errors) and delays.
///
/// **For tests and staging.** It exists to prove that the layers above it cope
/// with failure; never leave it in a production stack with faults enabled.
///
/// # Example
///
/// ```
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
/// use tower_mesh_fault::{AbortKind, FaultConfig, FaultHandle, FaultInjectedError, FaultLayer};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_mesh_core::BoxError> {
/// let faults = FaultHandle::with_seed(FaultConfig::none(), 1);
/// let service = ServiceBuilder::new()
///     .layer(FaultLayer::new(faults.clone()))
///     .service(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
///
/// assert_eq!(service.clone().oneshot(1).await?, 1);
/// faults.set(FaultConfig::builder().abort(100.0, AbortKind::Error).build()?);
/// let error = service.oneshot(2).await.unwrap_err();
/// assert!(error.downcast_ref::<FaultInjectedError>().is_some());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FaultLayer {
    handle: FaultHandle,
}

impl FaultLayer {
    /// Injects the faults `handle` holds.
    pub fn new(handle: FaultHandle) -> Self {
        FaultLayer { handle }
    }
}

impl<S> Layer<S> for FaultLayer {
    type Service = Fault<S, AbortWithError>;

    fn layer(&self, inner: S) -> Self::Service {
        Fault::new(inner, self.handle.clone(), AbortWithError)
    }
}

/// Like [`FaultLayer`], for HTTP services: an abort configured with a status
/// ends the request with a response of that status, as a failing server would.
#[cfg(feature = "http")]
#[derive(Debug, Clone)]
pub struct HttpFaultLayer {
    handle: FaultHandle,
}

#[cfg(feature = "http")]
impl HttpFaultLayer {
    /// Injects the faults `handle` holds.
    pub fn new(handle: FaultHandle) -> Self {
        HttpFaultLayer { handle }
    }
}

#[cfg(feature = "http")]
impl<S> Layer<S> for HttpFaultLayer {
    type Service = Fault<S, AbortWithStatus>;

    fn layer(&self, inner: S) -> Self::Service {
        Fault::new(inner, self.handle.clone(), AbortWithStatus)
    }
}

// ===== Fault =====

/// A service with faults injected into its requests. Made by [`FaultLayer`].
///
/// # Clone
///
/// Clones share the [`FaultHandle`]. The inner service must be `Clone`: a delayed
/// request is sent after its delay, by the ready service it was accepted with.
#[derive(Debug, Clone)]
pub struct Fault<S, A> {
    inner: S,
    handle: FaultHandle,
    abort: A,
}

impl<S, A> Fault<S, A> {
    /// Injects `handle`'s faults into `inner`, ending aborts as `abort` says.
    pub fn new(inner: S, handle: FaultHandle, abort: A) -> Self {
        Fault {
            inner,
            handle,
            abort,
        }
    }

    /// The handle of the faults injected.
    pub fn handle(&self) -> &FaultHandle {
        &self.handle
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
}

impl<S, A, Request> Service<Request> for Fault<S, A>
where
    S: Service<Request> + Clone,
    S::Error: Into<BoxError>,
    A: Abort<S::Response>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Request, A>;

    /// Waits for the inner service: faults never make it unready.
    ///
    /// - `Pending` while the inner service is not ready.
    /// - Errors with the inner service's error.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    /// Draws this request's faults: an abort without delay ends it at once, a
    /// delay holds it before it is sent (or aborted).
    fn call(&mut self, request: Request) -> Self::Future {
        let decision = self.handle.decide();
        let abort = self.abort.clone();
        let state = match (decision.delay, decision.abort) {
            (None, None) => State::Calling {
                future: self.inner.call(request),
            },
            (None, Some(kind)) => {
                tracing::trace!(?kind, "fault injected: abort");
                State::Aborted { kind: Some(kind) }
            }
            (Some(delay), kind) => {
                tracing::trace!(?delay, abort = ?kind, "fault injected: delay");
                let fresh = self.inner.clone();
                State::Delaying {
                    sleep: sleep(delay),
                    service: Some(mem::replace(&mut self.inner, fresh)),
                    request: Some(request),
                    abort: kind,
                }
            }
        };
        ResponseFuture { state, abort }
    }
}

pin_project! {
    /// The response future of [`Fault`].
    ///
    /// # Cancel safety
    ///
    /// Dropping it during an injected delay drops the request unsent.
    pub struct ResponseFuture<S, Request, A>
    where
        S: Service<Request>,
    {
        #[pin]
        state: State<S, Request, S::Future>,
        abort: A,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Request, F> {
        Calling {
            #[pin]
            future: F,
        },
        Delaying {
            #[pin]
            sleep: Sleep,
            service: Option<S>,
            request: Option<Request>,
            abort: Option<AbortKind>,
        },
        Aborted {
            kind: Option<AbortKind>,
        },
    }
}

impl<S, Request, A> Future for ResponseFuture<S, Request, A>
where
    S: Service<Request>,
    S::Error: Into<BoxError>,
    A: Abort<S::Response>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let this = self.as_mut().project();
            let next = match this.state.project() {
                StateProj::Calling { future } => return future.poll(cx).map_err(Into::into),
                StateProj::Aborted { kind } => {
                    let kind = kind.take().unwrap_or(AbortKind::Error);
                    return Poll::Ready(this.abort.abort(kind));
                }
                StateProj::Delaying {
                    sleep,
                    service,
                    request,
                    abort,
                } => {
                    ready!(sleep.poll(cx));
                    match (abort.take(), service.take(), request.take()) {
                        (Some(kind), _, _) => State::Aborted { kind: Some(kind) },
                        (None, Some(mut service), Some(request)) => State::Calling {
                            future: service.call(request),
                        },
                        // Polled again after it ended: answer as an abort would.
                        _ => State::Aborted { kind: None },
                    }
                }
            };
            self.as_mut().project().state.set(next);
        }
    }
}

impl<S, Request, A> fmt::Debug for ResponseFuture<S, Request, A>
where
    S: Service<Request>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
