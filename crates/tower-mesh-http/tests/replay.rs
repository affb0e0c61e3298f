//! Which requests a retry may send again, and request bodies kept for it.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_mesh_http::{BufferRequestBodyLayer, HttpReplay, ReplayBody, StatusClassifier};
use tower_mesh_retry::{Backoff, ReplayRequest, RetryLayer, RetryPolicy};

/// A body that arrives in several chunks, like one read from a socket.
struct Chunks(VecDeque<Bytes>);

impl Chunks {
    fn of(parts: &[&'static str]) -> Self {
        Chunks(
            parts
                .iter()
                .map(|part| Bytes::from_static(part.as_bytes()))
                .collect(),
        )
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|chunk| Ok(Frame::data(chunk))))
    }
}

fn request(method: Method) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri("http://backend/orders")
        .header("x-request-id", "42")
        .body(Full::new(Bytes::from_static(b"order")))
        .unwrap()
}

#[test]
fn idempotent_methods_are_replayed_and_others_are_not() {
    let replay = HttpReplay::default();
    for method in [
        Method::GET,
        Method::HEAD,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
    ] {
        assert!(
            replay.replay(&request(method.clone())).is_some(),
            "{method}"
        );
    }
    for method in [Method::POST, Method::PATCH, Method::CONNECT] {
        assert!(
            replay.replay(&request(method.clone())).is_none(),
            "{method}"
        );
    }
}

#[test]
fn a_post_is_replayed_once_allowed() {
    let post = request(Method::POST);
    assert!(HttpReplay::default()
        .allow_method(Method::POST)
        .replay(&post)
        .is_some());
    assert!(HttpReplay::default()
        .allow_every_method()
        .replay(&post)
        .is_some());
}

#[tokio::test]
async fn a_replayed_request_keeps_its_method_uri_headers_and_body() {
    let original = request(Method::PUT);
    let copy = HttpReplay::default().replay(&original).unwrap();
    assert_eq!(copy.method(), Method::PUT);
    assert_eq!(copy.uri(), original.uri());
    assert_eq!(copy.headers()["x-request-id"], "42");
    let body = copy.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "order");
}

type Seen = Arc<Mutex<Vec<Bytes>>>;

/// A server that answers 503 to its first request and 200 after, recording bodies.
fn flaky_server(
    seen: Seen,
) -> impl tower::Service<
    Request<ReplayBody<Chunks>>,
    Response = Response<()>,
    Error = tower_mesh_core::BoxError,
    Future = impl Send,
> + Clone {
    service_fn(move |request: Request<ReplayBody<Chunks>>| {
        let seen = seen.clone();
        async move {
            let body = request.into_body().collect().await?.to_bytes();
            let first = {
                let mut seen = seen.lock().unwrap();
                seen.push(body);
                seen.len() == 1
            };
            let status = if first { 503 } else { 200 };
            Ok(Response::builder().status(status).body(()).unwrap())
        }
    })
}

fn retrying(
    limit: usize,
    seen: Seen,
) -> impl tower::Service<Request<Chunks>, Response = Response<()>, Error = tower_mesh_core::BoxError>
{
    let replay = HttpReplay::default().allow_method(Method::POST);
    let policy = RetryPolicy::builder()
        .backoff(Backoff::constant(Duration::from_millis(10)))
        .build()
        .unwrap()
        .with_classifier(StatusClassifier::gateway_errors())
        .replay_with(move |request: &Request<ReplayBody<Chunks>>| replay.replay(request));
    ServiceBuilder::new()
        .layer(BufferRequestBodyLayer::new(limit).unwrap())
        .layer(RetryLayer::new(policy))
        .service(flaky_server(seen))
}

fn post(body: Chunks) -> Request<Chunks> {
    Request::post("http://backend/orders").body(body).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_buffered_body_is_sent_again_on_retry() {
    let seen = Seen::default();
    let client = retrying(1024, seen.clone());
    let response = client
        .oneshot(post(Chunks::of(&["pay ", "for ", "order"])))
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    let seen = seen.lock().unwrap();
    assert_eq!(
        *seen,
        ["pay for order", "pay for order"],
        "the same body both times"
    );
}

#[tokio::test(start_paused = true)]
async fn a_body_over_the_limit_is_sent_once_whole_and_not_retried() {
    let seen = Seen::default();
    let client = retrying(6, seen.clone());
    let response = client
        .oneshot(post(Chunks::of(&["pay ", "for ", "order"])))
        .await
        .unwrap();

    assert_eq!(response.status(), 503, "the failure is returned as it is");
    let seen = seen.lock().unwrap();
    assert_eq!(*seen, ["pay for order"], "sent once, every byte");
}

#[test]
fn a_zero_buffer_limit_is_rejected() {
    assert_eq!(BufferRequestBodyLayer::new(0).unwrap_err().field(), "limit");
}
