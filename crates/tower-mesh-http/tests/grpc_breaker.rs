//! The gRPC breaker judges each call by its final status: in the headers of a
//! trailers-only response, or in the trailers after the messages.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tower::{service_fn, BoxError, Layer, ServiceExt};
use tower_mesh_breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitOpenError, CircuitState};
use tower_mesh_http::{GrpcCircuitBreakerLayer, GrpcClassifier};

/// A gRPC-shaped response body: messages, then (maybe) trailers.
struct Reply(VecDeque<Frame<Bytes>>);

impl Body for Reply {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }
}

/// How the server reports the status of a call.
#[derive(Clone, Copy)]
enum Status {
    /// In the headers, with no message (a trailers-only response).
    InHeaders(u8),
    /// In the trailers, after one message.
    InTrailers(u8),
    /// Nowhere: the stream ends after one message.
    Missing,
}

fn reply(status: Status) -> Response<Reply> {
    let message = Frame::data(Bytes::from_static(b"\0\0\0\0\0"));
    let trailers = |code: u8| {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", u16::from(code).into());
        Frame::trailers(trailers)
    };
    let mut response = match status {
        Status::InHeaders(_) => Response::new(Reply(VecDeque::new())),
        Status::InTrailers(code) => Response::new(Reply(VecDeque::from([message, trailers(code)]))),
        Status::Missing => Response::new(Reply(VecDeque::from([message]))),
    };
    if let Status::InHeaders(code) = status {
        response
            .headers_mut()
            .insert("grpc-status", u16::from(code).into());
    }
    response
}

fn breaker() -> CircuitBreaker {
    let config = CircuitBreakerConfig::builder()
        .failure_threshold(2)
        .build()
        .unwrap();
    CircuitBreaker::new("grpc", config)
}

/// Sends one call answered with `status` and reads its body to the end.
async fn call(breaker: &CircuitBreaker, status: Status) -> Result<(), BoxError> {
    let server =
        service_fn(move |_: Request<()>| async move { Ok::<_, Infallible>(reply(status)) });
    let client =
        GrpcCircuitBreakerLayer::new(breaker.clone(), GrpcClassifier::default()).layer(server);
    let response = client.oneshot(Request::new(())).await?;
    response.into_body().collect().await?;
    Ok(())
}

#[tokio::test]
async fn an_unavailable_status_in_the_trailers_counts_as_a_failure() {
    let breaker = breaker();
    call(&breaker, Status::InTrailers(14)).await.unwrap();
    assert_eq!(breaker.metrics().consecutive_failures, 1);
    call(&breaker, Status::InTrailers(14)).await.unwrap();
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test]
async fn an_ok_status_in_the_trailers_is_a_success() {
    let breaker = breaker();
    call(&breaker, Status::InTrailers(14)).await.unwrap();
    call(&breaker, Status::InTrailers(0)).await.unwrap();
    assert_eq!(
        breaker.metrics().consecutive_failures,
        0,
        "the success ended the run"
    );
}

#[tokio::test]
async fn a_status_in_the_headers_is_judged_at_once() {
    let breaker = breaker();
    call(&breaker, Status::InHeaders(5)).await.unwrap();
    assert_eq!(
        breaker.metrics().consecutive_failures,
        0,
        "NOT_FOUND is not a failure"
    );
    call(&breaker, Status::InHeaders(13)).await.unwrap();
    assert_eq!(breaker.metrics().consecutive_failures, 1, "INTERNAL is");
}

#[tokio::test]
async fn a_stream_that_ends_without_a_status_is_a_failure() {
    let breaker = breaker();
    call(&breaker, Status::Missing).await.unwrap();
    assert_eq!(breaker.metrics().consecutive_failures, 1);
}

#[tokio::test]
async fn a_body_dropped_before_its_trailers_records_nothing() {
    let breaker = breaker();
    let server =
        service_fn(|_: Request<()>| async { Ok::<_, Infallible>(reply(Status::InTrailers(14))) });
    let client =
        GrpcCircuitBreakerLayer::new(breaker.clone(), GrpcClassifier::default()).layer(server);
    let response = client.oneshot(Request::new(())).await.unwrap();
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    drop(body);
    assert_eq!(breaker.metrics().consecutive_failures, 0);
}

#[tokio::test]
async fn an_open_breaker_rejects_calls_before_they_reach_the_server() {
    let breaker = breaker();
    breaker.force_open();
    let reached = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = reached.clone();
    let server = service_fn(move |_: Request<()>| {
        seen.store(true, std::sync::atomic::Ordering::SeqCst);
        async { Ok::<_, Infallible>(reply(Status::InHeaders(0))) }
    });
    let client =
        GrpcCircuitBreakerLayer::new(breaker.clone(), GrpcClassifier::default()).layer(server);
    let error = client.oneshot(Request::new(())).await.unwrap_err();
    assert!(error.downcast_ref::<CircuitOpenError>().is_some());
    assert!(!reached.load(std::sync::atomic::Ordering::SeqCst));
}
