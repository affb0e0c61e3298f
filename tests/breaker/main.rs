//! End-to-end tests of the circuit breaker in front of a real server on loopback.
//!
//! The server speaks one line per connection; the tests mark it unhealthy, hold
//! its answers, and count the connections it sees, so what reaches the network
//! is measured rather than assumed. Time is tokio's paused clock, advanced by hand.

mod support;

use std::time::Duration;

use support::Backend;
use tokio::time::advance;
use tower::{BoxError, ServiceBuilder, ServiceExt};
use tower_mesh_breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer};
use tower_mesh_breaker::{CircuitOpenError, CircuitState};

const OPEN_FOR: Duration = Duration::from_secs(10);

fn breaker(half_open_max_calls: u32) -> CircuitBreaker {
    let config = CircuitBreakerConfig::builder()
        .failure_threshold(3)
        .success_threshold(2)
        .open_duration(OPEN_FOR)
        .half_open_max_calls(half_open_max_calls)
        .build()
        .expect("a valid configuration");
    CircuitBreaker::new("backend", config)
}

fn is_open(error: &BoxError) -> bool {
    error.downcast_ref::<CircuitOpenError>().is_some()
}

#[tokio::test(start_paused = true)]
async fn an_unhealthy_backend_is_cut_off_then_readmitted_once_it_recovers() {
    let backend = Backend::start().await;
    let breaker = breaker(1);
    let client = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .service(backend.client());

    // Healthy: calls go through.
    assert_eq!(client.clone().oneshot("hello").await.unwrap(), "ok");

    // Three failures trip the breaker; the next calls never reach the network.
    backend.set_healthy(false);
    for _ in 0..3 {
        let error = client.clone().oneshot("hello").await.unwrap_err();
        assert!(!is_open(&error), "the backend's own error: {error}");
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    let seen = backend.connections();
    for _ in 0..10 {
        assert!(is_open(&client.clone().oneshot("hello").await.unwrap_err()));
    }
    assert_eq!(
        backend.connections(),
        seen,
        "rejected calls open no connection"
    );

    // Recovered, and the open duration over: two probes close the breaker.
    backend.set_healthy(true);
    advance(OPEN_FOR).await;
    for _ in 0..2 {
        assert_eq!(client.clone().oneshot("probe").await.unwrap(), "ok");
    }
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(backend.connections(), seen + 2);
}

#[tokio::test(start_paused = true)]
async fn concurrent_callers_in_half_open_reach_the_backend_no_more_than_the_probe_limit() {
    let backend = Backend::start().await;
    let breaker = breaker(3);
    let client = ServiceBuilder::new()
        .buffer(64)
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .service(backend.client());
    for _ in 0..3 {
        breaker.try_acquire().expect("closed").failure();
    }
    advance(OPEN_FOR).await;

    // Twenty callers arrive at once while the backend holds its answers.
    backend.hold_answers().await;
    let before = backend.connections();
    let callers: Vec<_> = (0..20)
        .map(|_| tokio::spawn(client.clone().oneshot("probe")))
        .collect();
    support::until(|| callers.iter().filter(|c| c.is_finished()).count() == 17).await;
    support::until(|| backend.connections() - before == 3).await;

    let mut admitted = Vec::new();
    for caller in callers {
        if caller.is_finished() {
            let error = caller.await.unwrap().unwrap_err();
            assert!(is_open(&error), "only a rejection ends early: {error}");
        } else {
            admitted.push(caller);
        }
    }
    assert_eq!(admitted.len(), 3, "exactly the probe limit is in flight");
    backend.release();
    for caller in admitted {
        assert_eq!(caller.await.unwrap().unwrap(), "ok");
    }
    assert_eq!(
        backend.connections() - before,
        3,
        "nothing else reached the backend"
    );
    assert_eq!(breaker.state(), CircuitState::Closed);
}
