//! `ServiceProxy` with HTTP classification and replay, over mock HTTP clients.
#![cfg(feature = "http")]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use tower::service_fn;
use tower_mesh::http::{HttpReplay, StatusClassifier};
use tower_mesh::prelude::*;
use tower_mesh::retry::ReplayRequest;

/// A client answering `503` to its first request and `200` after, counting calls.
fn unavailable_once(
    calls: Arc<AtomicU32>,
) -> impl tower::Service<Request<String>, Response = Response<String>, Error = BoxError, Future: Send>
       + Clone
       + Send
       + Sync
       + 'static {
    service_fn(move |_: Request<String>| {
        let first = calls.fetch_add(1, Ordering::Relaxed) == 0;
        async move {
            let status = match first {
                true => StatusCode::SERVICE_UNAVAILABLE,
                false => StatusCode::OK,
            };
            let mut response = Response::new(String::new());
            *response.status_mut() = status;
            Ok::<_, BoxError>(response)
        }
    })
}

fn proxy(client_calls: Arc<AtomicU32>) -> ServiceProxy<Request<String>, Response<String>> {
    let replay = HttpReplay::idempotent();
    let policy = RetryPolicy::builder()
        .max_retries(2)
        .backoff(Backoff::constant(Duration::from_millis(1)))
        .build()
        .unwrap()
        .replay_with(move |request: &Request<String>| replay.replay(request));
    ServiceProxy::builder("http")
        .classifier(StatusClassifier::gateway_errors())
        .retry(policy)
        .build_client(unavailable_once(client_calls))
        .unwrap()
}

fn request(method: Method) -> Request<String> {
    let mut request = Request::new(String::from("body"));
    *request.method_mut() = method;
    request
}

#[tokio::test(start_paused = true)]
async fn a_503_to_a_get_is_retried_by_the_proxy() {
    let calls = Arc::new(AtomicU32::new(0));
    let response = proxy(calls.clone())
        .call(request(Method::GET))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::Relaxed), 2);
}

#[tokio::test(start_paused = true)]
async fn a_503_to_a_post_is_returned_as_it_is() {
    let calls = Arc::new(AtomicU32::new(0));
    let proxy = proxy(calls.clone());
    let response = proxy.call(request(Method::POST)).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(calls.load(Ordering::Relaxed), 1, "a POST is sent once");
    assert_eq!(proxy.stats().retries, 0);
}
