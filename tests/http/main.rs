//! End-to-end tests of the HTTP stack against real hyper servers on loopback:
//! retry, the circuit breaker and the balancer, composed with plain
//! `tower::ServiceBuilder` over hyper-util endpoints.
//!
//! Time is tokio's paused clock: the servers do real network I/O, and the tests
//! move the clock by hand where a wait matters.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use support::{Backend, Mode};
use tokio::time::{advance, Instant};
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceBuilder, ServiceExt};
use tower_mesh_balance::ServiceRegistry;
use tower_mesh_balance::{LoadBalancer, LoadBalancerStrategy, NoHealthyInstanceError};
use tower_mesh_breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer};
use tower_mesh_breaker::{CircuitOpenError, CircuitState};
use tower_mesh_http::{HttpReplay, MakeHttpEndpoint, RetryAfter, StatusClassifier};
use tower_mesh_retry::{Backoff, ReplayRequest, ReplayWith, RetryLayer, RetryPolicy};

type Client = BoxCloneSyncService<Request<Full<Bytes>>, Response<Incoming>, BoxError>;

/// How requests are copied for a retry.
trait Replay: Fn(&Request<Full<Bytes>>) -> Option<Request<Full<Bytes>>> + Clone + Send + Sync {}

impl<F> Replay for F where
    F: Fn(&Request<Full<Bytes>>) -> Option<Request<Full<Bytes>>> + Clone + Send + Sync
{
}

fn get() -> Request<Full<Bytes>> {
    Request::get("http://backend/orders")
        .body(Full::default())
        .unwrap()
}

fn post(body: &'static str) -> Request<Full<Bytes>> {
    let body = Full::new(Bytes::from_static(body.as_bytes()));
    Request::post("http://backend/orders").body(body).unwrap()
}

/// A retry policy for HTTP: gateway errors and refused connections are retried,
/// after 10 ms, honouring `Retry-After` up to 10 s; `replay` decides which
/// requests may be sent twice.
fn retry_layer(
    replay: HttpReplay,
) -> RetryLayer<StatusClassifier, RetryAfter, ReplayWith<impl Replay>> {
    let policy = RetryPolicy::builder()
        .max_retries(2)
        .backoff(Backoff::constant(Duration::from_millis(10)))
        .max_delay(Duration::from_secs(30))
        .build()
        .expect("a valid policy")
        .with_classifier(StatusClassifier::gateway_errors())
        .with_retryable(RetryAfter::new(Duration::from_secs(10)).expect("a valid wait"))
        .replay_with(move |request: &Request<Full<Bytes>>| replay.replay(request));
    RetryLayer::new(policy)
}

/// Retry over a round-robin balancer with outlier detection over `backends`, and
/// the registry that feeds it.
fn balanced(backends: &[&Arc<Backend>]) -> (Client, ServiceRegistry) {
    let registry = ServiceRegistry::new(LoadBalancerStrategy::RoundRobin);
    for (index, backend) in backends.iter().enumerate() {
        registry
            .register(backend.instance(&format!("backend-{index}")))
            .unwrap();
    }
    let ejection = CircuitBreakerConfig::builder()
        .failure_threshold(1)
        .open_duration(Duration::from_secs(3_600))
        .build()
        .unwrap();
    let balancer = LoadBalancer::builder(registry.discover(MakeHttpEndpoint::new()))
        .strategy(LoadBalancerStrategy::RoundRobin)
        .classifier(StatusClassifier::gateway_errors())
        .outlier_detection(ejection)
        .max_ejection_percent(100)
        .build()
        .expect("a valid balancer");
    let stack = ServiceBuilder::new()
        .layer(retry_layer(HttpReplay::default()))
        .buffer(64)
        .service(balancer);
    (BoxCloneSyncService::new(stack), registry)
}

/// Retry, then a service-wide breaker, over one backend.
fn guarded(backend: &Backend, breaker: &CircuitBreaker, replay: HttpReplay) -> Client {
    let mut make = MakeHttpEndpoint::<Full<Bytes>>::new();
    let endpoint =
        tower_mesh_balance::MakeEndpoint::make_endpoint(&mut make, &backend.instance("one"));
    let breaker = CircuitBreakerLayer::new(breaker.clone())
        .with_classifier(StatusClassifier::gateway_errors());
    let stack = ServiceBuilder::new()
        .layer(retry_layer(replay))
        .layer(breaker)
        .service(endpoint);
    BoxCloneSyncService::new(stack)
}

fn is_open(error: &BoxError) -> bool {
    error.downcast_ref::<CircuitOpenError>().is_some()
}

#[tokio::test(start_paused = true)]
async fn calls_fail_over_to_the_live_backend_when_one_dies() {
    let (live, dying) = (Backend::start().await, Backend::start().await);
    let (client, _registry) = balanced(&[&live, &dying]);
    for _ in 0..4 {
        assert_eq!(
            client.clone().oneshot(get()).await.unwrap().status(),
            StatusCode::OK
        );
    }
    assert_eq!(
        (live.requests(), dying.requests()),
        (2, 2),
        "round robin over both"
    );

    dying.stop();
    for call in 0..20 {
        let response = client.clone().oneshot(get()).await;
        assert_eq!(response.unwrap().status(), StatusCode::OK, "call {call}");
    }
    assert_eq!(
        live.requests(),
        22,
        "every call after the death went to the live one"
    );
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_on_a_failing_backend_and_closes_once_it_recovers() {
    let backend = Backend::start().await;
    let config = CircuitBreakerConfig::builder()
        .failure_threshold(3)
        .success_threshold(2)
        .open_duration(Duration::from_secs(3_600))
        .build()
        .unwrap();
    let breaker = CircuitBreaker::new("orders", config);
    let client = guarded(&backend, &breaker, HttpReplay::default());
    backend.set_mode(Mode::Unavailable { retry_after: None });

    // One call and its two retries fail three times and trip the breaker; the
    // call ends with the backend's last answer.
    let response = client.clone().oneshot(get()).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(backend.requests(), 3);

    // The next call is rejected at once, and the rejection is not retried.
    assert!(is_open(&client.clone().oneshot(get()).await.unwrap_err()));
    assert_eq!(backend.requests(), 3, "nothing reached the backend");

    backend.set_mode(Mode::Healthy);
    advance(Duration::from_secs(3_600)).await;
    for _ in 0..2 {
        assert_eq!(
            client.clone().oneshot(get()).await.unwrap().status(),
            StatusCode::OK
        );
    }
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_retry_waits_as_long_as_retry_after_asks() {
    let backend = Backend::start().await;
    let breaker = CircuitBreaker::new("orders", CircuitBreakerConfig::default());
    let client = guarded(&backend, &breaker, HttpReplay::default());
    backend.fail_next(
        1,
        Mode::Unavailable {
            retry_after: Some(2),
        },
    );

    let started = Instant::now();
    let response = client.oneshot(get()).await.unwrap();
    let waited = started.elapsed();

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(backend.requests(), 2);
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_millis(2_100),
        "waited {waited:?}, not the 10 ms backoff"
    );
}

#[tokio::test(start_paused = true)]
async fn a_post_is_not_retried_unless_allowed() {
    let backend = Backend::start().await;
    backend.set_mode(Mode::Unavailable { retry_after: None });
    let breaker = CircuitBreaker::new("orders", CircuitBreakerConfig::default()).leak();

    let client = guarded(&backend, &breaker, HttpReplay::default());
    let response = client.oneshot(post("pay")).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(backend.requests(), 1, "sent once");

    breaker.reset();
    let client = guarded(
        &backend,
        &breaker,
        HttpReplay::default().allow_method(Method::POST),
    );
    let response = client.oneshot(post("pay")).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        backend.requests(),
        4,
        "then sent three times: once and two retries"
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_body_is_sent_again_on_retry() {
    let backend = Backend::start().await;
    backend.fail_next(1, Mode::Unavailable { retry_after: None });
    let breaker = CircuitBreaker::new("orders", CircuitBreakerConfig::default());
    let replay = HttpReplay::default().allow_method(Method::POST);
    let client = guarded(&backend, &breaker, replay);

    let response = client.oneshot(post("order-17")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(backend.bodies(), ["order-17", "order-17"]);
}

#[tokio::test(start_paused = true)]
async fn every_backend_down_ends_in_no_healthy_instance_error() {
    let (first, second) = (Backend::start().await, Backend::start().await);
    let (client, _registry) = balanced(&[&first, &second]);
    first.stop();
    second.stop();

    // Each refused attempt ejects its backend; once both are out, calls fail at
    // once with the balancer's own error instead of hanging.
    let mut last = None;
    for _ in 0..3 {
        last = Some(client.clone().oneshot(get()).await.unwrap_err());
    }
    let error = last.unwrap();
    assert!(
        error.downcast_ref::<NoHealthyInstanceError>().is_some(),
        "got: {error}"
    );
}
