//! [`GrpcCircuitBreakerLayer`]: a circuit breaker that reads gRPC statuses from
//! trailers as well as headers.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_mesh_breaker::{CircuitBreaker, CircuitOpenError, Permit};
use tower_mesh_core::{BoxError, Outcome};
use tower_service::Service;

use crate::classify::{GrpcClassifier, GrpcCode};

/// Guards a gRPC client with a [`CircuitBreaker`] that judges each call by its
/// final gRPC status, wherever the server put it.
///
/// A gRPC server sends the status of a failed call either in the response headers
/// (a "trailers-only" response) or, after the messages, in the trailers. A
/// breaker that classifies responses as they arrive, like
/// [`CircuitBreakerLayer`](tower_mesh_breaker::CircuitBreakerLayer) with a
/// [`GrpcClassifier`], sees only the first kind. This layer keeps the call's
/// permit inside the response body when the headers carry no status, and records
/// the outcome when the trailers arrive:
///
/// - a status in the headers or trailers is judged by the classifier;
/// - a body error, or a body that ends without any status, is a failure;
/// - a body dropped before its end records nothing (the call was abandoned).
///
/// An open breaker rejects calls with [`CircuitOpenError`] without reaching the
/// inner service, and never fails `poll_ready`.
///
/// # Example
///
/// ```
/// use tower::ServiceBuilder;
/// use tower_mesh_breaker::{CircuitBreaker, CircuitBreakerConfig};
/// use tower_mesh_http::{GrpcCircuitBreakerLayer, GrpcClassifier};
///
/// let breaker = CircuitBreaker::new("inventory-grpc", CircuitBreakerConfig::default());
/// let layer = GrpcCircuitBreakerLayer::new(breaker, GrpcClassifier::default());
/// # let _ = ServiceBuilder::new().layer(layer);
/// ```
#[derive(Debug, Clone)]
pub struct GrpcCircuitBreakerLayer {
    breaker: CircuitBreaker,
    classifier: GrpcClassifier,
}

impl GrpcCircuitBreakerLayer {
    /// Feeds `breaker` with each call's status as `classifier` judges it.
    pub fn new(breaker: CircuitBreaker, classifier: GrpcClassifier) -> Self {
        GrpcCircuitBreakerLayer {
            breaker,
            classifier,
        }
    }
}

impl<S> Layer<S> for GrpcCircuitBreakerLayer {
    type Service = GrpcCircuitBreaker<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcCircuitBreaker {
            inner,
            breaker: self.breaker.clone(),
            classifier: self.classifier,
        }
    }
}

/// The service of [`GrpcCircuitBreakerLayer`].
///
/// # Clone
///
/// Clones share the breaker.
#[derive(Debug, Clone)]
pub struct GrpcCircuitBreaker<S> {
    inner: S,
    breaker: CircuitBreaker,
    classifier: GrpcClassifier,
}

impl<S> GrpcCircuitBreaker<S> {
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
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for GrpcCircuitBreaker<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
    ResBody: Body,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<StatusBody<ResBody>>;
    type Error = BoxError;
    type Future = GrpcBreakerFuture<S::Future>;

    /// Waits for the inner service.
    ///
    /// - `Pending` while the inner service is not ready.
    /// - Errors only with the inner service's error, never because the circuit is
    ///   open.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let state = match self.breaker.try_acquire() {
            Ok(permit) => CallState::Admitted {
                future: self.inner.call(request),
                call: Some(Call {
                    permit,
                    classifier: self.classifier,
                    started: Instant::now(),
                }),
            },
            Err(open) => CallState::Rejected { error: Some(open) },
        };
        GrpcBreakerFuture { state }
    }
}

/// One admitted call waiting for its status.
struct Call {
    permit: Permit,
    classifier: GrpcClassifier,
    started: Instant,
}

impl Call {
    fn record(self, outcome: Outcome) {
        let latency = self.started.elapsed();
        self.permit.record(outcome, latency);
    }
}

impl fmt::Debug for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("permit", &self.permit)
            .finish()
    }
}

pin_project! {
    /// The response future of [`GrpcCircuitBreaker`].
    ///
    /// # Cancel safety
    ///
    /// Dropping it records nothing and frees the call's half-open probe slot, if
    /// it held one.
    pub struct GrpcBreakerFuture<F> {
        #[pin]
        state: CallState<F>,
    }
}

pin_project! {
    #[project = CallStateProj]
    enum CallState<F> {
        Admitted {
            #[pin]
            future: F,
            call: Option<Call>,
        },
        Rejected {
            error: Option<CircuitOpenError>,
        },
    }
}

impl<F, B, E> Future for GrpcBreakerFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<StatusBody<B>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            CallStateProj::Rejected { error } => Poll::Ready(Err(match error.take() {
                Some(open) => open.into(),
                None => "gRPC breaker future polled after completion".into(),
            })),
            CallStateProj::Admitted { future, call } => {
                let result = ready!(future.poll(cx));
                let Some(call) = call.take() else {
                    return Poll::Ready(Err("gRPC breaker future polled after completion".into()));
                };
                Poll::Ready(settle_headers(result, call))
            }
        }
    }
}

/// Records a call whose headers carry its status, or hands its permit to the body.
fn settle_headers<B, E: Into<BoxError>>(
    result: Result<Response<B>, E>,
    call: Call,
) -> Result<Response<StatusBody<B>>, BoxError> {
    let response = match result {
        Ok(response) => response,
        Err(error) => {
            call.record(Outcome::Failure);
            return Err(error.into());
        }
    };
    let call = match GrpcCode::from_headers(response.headers()) {
        Some(code) => {
            let outcome = call.classifier.classify_code(code);
            call.record(outcome);
            None
        }
        None => Some(call),
    };
    Ok(response.map(|inner| StatusBody { inner, call }))
}

impl<F> fmt::Debug for GrpcBreakerFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcBreakerFuture").finish_non_exhaustive()
    }
}

// ===== StatusBody =====

pin_project! {
    /// A gRPC response body that records its call's outcome when its trailers
    /// arrive. Made by [`GrpcCircuitBreaker`]; frames pass through unchanged.
    pub struct StatusBody<B> {
        #[pin]
        inner: B,
        call: Option<Call>,
    }
}

impl<B> Body for StatusBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        let Some(call) = this.call.take() else {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        };
        match verdict(&frame, &call.classifier) {
            Some(outcome) => call.record(outcome),
            None => *this.call = Some(call),
        }
        Poll::Ready(frame.map(|frame| frame.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The outcome a frame settles, or `None` for a data frame (the status is still
/// to come). Trailers without a status, an end without trailers and a body error
/// are failures: the call broke before saying how it went.
fn verdict<D, E>(
    frame: &Option<Result<Frame<D>, E>>,
    classifier: &GrpcClassifier,
) -> Option<Outcome> {
    match frame {
        Some(Ok(frame)) if frame.is_data() => None,
        Some(Ok(frame)) => Some(
            frame
                .trailers_ref()
                .and_then(|trailers| classifier.classify_trailers(trailers))
                .unwrap_or(Outcome::Failure),
        ),
        Some(Err(_)) | None => Some(Outcome::Failure),
    }
}

impl<B> fmt::Debug for StatusBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatusBody")
            .field("awaiting_status", &self.call.is_some())
            .finish_non_exhaustive()
    }
}
