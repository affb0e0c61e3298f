//! `ServiceProxy` over mock endpoints, with paused time where timing matters.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tower::util::MapRequestLayer;
use tower::{service_fn, ServiceBuilder, ServiceExt};
use tower_mesh::prelude::*;
use tower_mesh::HealthChange;

type Calls = Arc<AtomicU32>;

fn calls() -> Calls {
    Arc::new(AtomicU32::new(0))
}

fn count(calls: &Calls) -> u32 {
    calls.load(Ordering::Relaxed)
}

/// Retries with no wait between attempts, so tests see every attempt at once.
fn quick_retries(max_retries: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .max_retries(max_retries)
        .backoff(Backoff::constant(Duration::from_millis(1)))
        .jitter(0.0)
        .build()
        .unwrap()
}

/// A round-robin registry of instances with these ids, on made-up ports.
fn registry(ids: &[&str]) -> ServiceRegistry {
    let registry = ServiceRegistry::new(LoadBalancerStrategy::RoundRobin);
    for (port, id) in (8000..).zip(ids) {
        registry
            .register(ServiceInstance::new(*id, "127.0.0.1", port))
            .unwrap();
    }
    registry
}

/// Lets the paused clock move past the health sampling interval.
async fn let_health_be_sampled() {
    tokio::time::advance(Duration::from_millis(10)).await;
}

#[tokio::test(start_paused = true)]
async fn a_proxy_fails_over_from_a_refusing_instance_and_ejects_it() {
    let registry = registry(&["good", "bad"]);
    let bad_calls = calls();
    let seen = bad_calls.clone();
    let discover = registry.discover(move |instance: &ServiceInstance| {
        let down = instance.id == "bad";
        let seen = seen.clone();
        service_fn(move |n: u32| {
            if down {
                seen.fetch_add(1, Ordering::Relaxed);
            }
            async move {
                match down {
                    true => Err(std::io::Error::other("connection refused")),
                    false => Ok(n),
                }
            }
        })
    });
    let outliers = CircuitBreakerConfig::builder()
        .failure_threshold(2)
        .open_duration(Duration::from_secs(60))
        .build()
        .unwrap();
    let proxy = ServiceProxy::builder("inventory")
        .retry(quick_retries(2))
        .outlier_detection(outliers)
        .build(discover)
        .unwrap();

    for n in 0..20 {
        assert_eq!(proxy.call(n).await.unwrap(), n, "every call is answered");
    }
    assert_eq!(count(&bad_calls), 2, "two failures eject the bad instance");
    assert_eq!(proxy.stats().retries, 2, "each failure was retried once");

    let_health_be_sampled().await;
    proxy.call(0).await.unwrap();
    let health = proxy.health().unwrap();
    let ejected = health
        .events()
        .into_iter()
        .any(|event| event.endpoint == "bad" && event.change == HealthChange::Ejected);
    assert!(ejected, "the ejection is reported: {:?}", health.events());
    let good = health.endpoints().into_iter().find(|e| e.name == "good");
    assert!(
        good.unwrap().status.healthy,
        "the good instance stays in rotation"
    );
}

#[tokio::test(start_paused = true)]
async fn a_rejection_by_the_open_breaker_is_not_retried() {
    let inner_calls = calls();
    let seen = inner_calls.clone();
    let client = service_fn(move |_: ()| {
        seen.fetch_add(1, Ordering::Relaxed);
        async { Err::<(), _>(std::io::Error::other("reset")) }
    });
    let breaker = CircuitBreakerConfig::builder()
        .failure_threshold(2)
        .open_duration(Duration::from_secs(30))
        .build()
        .unwrap();
    let proxy = ServiceProxy::builder("payments")
        .retry(quick_retries(5))
        .circuit_breaker(breaker)
        .build_client(client)
        .unwrap();

    // Two attempts fail and open the breaker; the third is rejected, not retried.
    let error = proxy.call(()).await.unwrap_err();
    assert!(
        error.downcast_ref::<CircuitOpenError>().is_some(),
        "{error}"
    );
    assert_eq!(count(&inner_calls), 2);
    assert_eq!(proxy.stats().attempts, 3);

    // While open, a call is one rejected attempt and never reaches the client.
    let error = proxy.call(()).await.unwrap_err();
    assert!(error.downcast_ref::<CircuitOpenError>().is_some());
    assert_eq!(count(&inner_calls), 2);
    assert_eq!(proxy.stats().attempts, 4);
    assert_eq!(proxy.breaker().unwrap().state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn the_overall_timeout_bounds_every_retry() {
    let inner_calls = calls();
    let seen = inner_calls.clone();
    let hanging = service_fn(move |_: ()| {
        seen.fetch_add(1, Ordering::Relaxed);
        async {
            tokio::time::sleep(Duration::from_secs(3_600)).await;
            Ok::<_, BoxError>(())
        }
    });
    let policy = RetryPolicy::builder()
        .max_retries(100)
        .backoff(Backoff::constant(Duration::from_millis(10)))
        .jitter(0.0)
        .build()
        .unwrap();
    let proxy = ServiceProxy::builder("search")
        .timeout(Duration::from_millis(250))
        .attempt_timeout(Duration::from_millis(100))
        .retry(policy)
        .without_circuit_breaker()
        .build_client(hanging)
        .unwrap();

    let started = Instant::now();
    let error = proxy.call(()).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        error
            .downcast_ref::<tower::timeout::error::Elapsed>()
            .is_some(),
        "{error}"
    );
    assert_eq!(
        elapsed,
        Duration::from_millis(250),
        "the whole call, not one attempt"
    );
    assert_eq!(count(&inner_calls), 3, "attempts at 0, 110 and 220 ms");
}

#[tokio::test(start_paused = true)]
async fn a_backoff_that_would_outlast_the_overall_timeout_is_not_waited_for() {
    let inner_calls = calls();
    let seen = inner_calls.clone();
    let refusing = service_fn(move |_: ()| {
        seen.fetch_add(1, Ordering::Relaxed);
        async { Err::<(), BoxError>("connection refused".into()) }
    });
    let policy = RetryPolicy::builder()
        .backoff(Backoff::constant(Duration::from_secs(10)))
        .jitter(0.0)
        .build()
        .unwrap();
    let proxy = ServiceProxy::builder("search")
        .timeout(Duration::from_secs(2))
        .retry(policy)
        .without_circuit_breaker()
        .build_client(refusing)
        .unwrap();

    let started = Instant::now();
    let error = proxy.call(()).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "connection refused",
        "the attempt's own error"
    );
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "no wait for a retry past the timeout"
    );
    assert_eq!(count(&inner_calls), 1);
}

#[tokio::test(start_paused = true)]
async fn a_retry_sent_in_the_first_poll_is_bounded_by_the_overall_timeout() {
    let inner_calls = calls();
    let seen = inner_calls.clone();
    let refusing_then_hanging = service_fn(move |_: ()| {
        let first = seen.fetch_add(1, Ordering::Relaxed) == 0;
        async move {
            if first {
                return Err::<(), BoxError>("connection refused".into());
            }
            std::future::pending::<()>().await;
            Ok(())
        }
    });
    let policy = RetryPolicy::builder()
        .backoff(Backoff::constant(Duration::ZERO))
        .jitter(0.0)
        .build()
        .unwrap();
    // The per-attempt timeout defaults to the overall one.
    let proxy = ServiceProxy::builder("search")
        .timeout(Duration::from_secs(1))
        .retry(policy)
        .without_circuit_breaker()
        .build_client(refusing_then_hanging)
        .unwrap();

    let started = Instant::now();
    let error = proxy.call(()).await.unwrap_err();
    assert!(error.is::<tower::timeout::error::Elapsed>(), "{error}");
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    // The refused attempt, its retry at once (in the call's first poll), and a
    // last retry when that one timed out, at the very end of the call.
    assert_eq!(count(&inner_calls), 3);
}

#[tokio::test(start_paused = true)]
async fn a_first_attempt_that_never_answers_ends_at_the_overall_timeout() {
    let hanging = service_fn(|_: ()| async {
        std::future::pending::<()>().await;
        Ok::<_, BoxError>(())
    });
    let proxy = ServiceProxy::builder("search")
        .timeout(Duration::from_millis(300))
        .without_retries()
        .build_client(hanging)
        .unwrap();

    let started = Instant::now();
    let error = proxy.call(()).await.unwrap_err();
    assert!(error.is::<tower::timeout::error::Elapsed>(), "{error}");
    assert_eq!(started.elapsed(), Duration::from_millis(300));
}

#[tokio::test(start_paused = true)]
async fn an_attempt_timeout_is_retried_within_the_overall_timeout() {
    let inner_calls = calls();
    let seen = inner_calls.clone();
    let slow_then_quick = service_fn(move |_: ()| {
        let first = seen.fetch_add(1, Ordering::Relaxed) == 0;
        async move {
            if first {
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
            Ok::<_, BoxError>("done")
        }
    });
    let proxy = ServiceProxy::builder("search")
        .timeout(Duration::from_secs(1))
        .attempt_timeout(Duration::from_millis(100))
        .retry(quick_retries(1))
        .build_client(slow_then_quick)
        .unwrap();

    assert_eq!(proxy.call(()).await.unwrap(), "done");
    assert_eq!(count(&inner_calls), 2);
}

#[tokio::test]
async fn an_empty_instance_set_fails_with_no_healthy_instance() {
    let registry = ServiceRegistry::new(LoadBalancerStrategy::RoundRobin);
    let discover = registry.discover(|_: &ServiceInstance| {
        service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n) })
    });
    let proxy = ServiceProxy::builder("empty")
        .without_retries()
        .build(discover)
        .unwrap();

    let error = proxy.call(1).await.unwrap_err();
    let none = error.downcast_ref::<NoHealthyInstanceError>();
    assert_eq!(none.map(|none| none.known_instances()), Some(0), "{error}");
}

#[tokio::test(start_paused = true)]
async fn a_user_layer_sees_every_attempt() {
    let layer_calls = calls();
    let seen = layer_calls.clone();
    let inner_calls = calls();
    let inner_seen = inner_calls.clone();
    let fails_once = service_fn(move |n: u32| {
        let first = inner_seen.fetch_add(1, Ordering::Relaxed) == 0;
        async move {
            match first {
                true => Err(std::io::Error::other("reset")),
                false => Ok(n),
            }
        }
    });
    let proxy = ServiceProxy::builder("layered")
        .retry(quick_retries(1))
        .layer(MapRequestLayer::new(move |n: u32| {
            seen.fetch_add(1, Ordering::Relaxed);
            n
        }))
        .build_client(fails_once)
        .unwrap();

    assert_eq!(proxy.call(7).await.unwrap(), 7);
    assert_eq!(count(&layer_calls), 2, "the first attempt and its retry");
}

#[tokio::test(start_paused = true)]
async fn an_instance_marked_unhealthy_through_the_health_handle_takes_no_calls() {
    let registry = registry(&["a", "b"]);
    let a_calls = calls();
    let seen = a_calls.clone();
    let discover = registry.discover(move |instance: &ServiceInstance| {
        let is_a = instance.id == "a";
        let seen = seen.clone();
        service_fn(move |n: u32| {
            if is_a {
                seen.fetch_add(1, Ordering::Relaxed);
            }
            async move { Ok::<_, std::io::Error>(n) }
        })
    });
    let proxy = ServiceProxy::builder("marked").build(discover).unwrap();
    proxy.call(0).await.unwrap();
    let health = proxy.health().unwrap();
    let names: Vec<_> = health.endpoints().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["a", "b"]);

    assert!(health.mark_healthy("a", false));
    assert!(!health.mark_healthy("unknown", false), "no such endpoint");
    let before = count(&a_calls);
    for n in 0..10 {
        proxy.call(n).await.unwrap();
    }
    assert_eq!(count(&a_calls), before, "every call went to b");

    let_health_be_sampled().await;
    proxy.call(0).await.unwrap();
    let a = health
        .endpoints()
        .into_iter()
        .find(|e| e.name == "a")
        .unwrap();
    assert!(a.status.marked_unhealthy);
}

#[tokio::test]
async fn clones_share_the_breaker_the_budget_and_the_counts() {
    let client = service_fn(|n: u32| async move { Ok::<_, BoxError>(n) });
    let proxy = ServiceProxy::builder("shared")
        .build_client(client)
        .unwrap();
    let clone = proxy.clone();
    clone.call(1).await.unwrap();
    proxy.call(2).await.unwrap();

    assert_eq!(proxy.stats().requests, 2);
    assert_eq!(clone.stats().requests, 2);
    clone.breaker().unwrap().force_open();
    assert_eq!(proxy.breaker().unwrap().state(), CircuitState::ForcedOpen);
    assert!(
        proxy.retry_budget().is_some(),
        "the default policy has a budget"
    );
    assert!(proxy.health().is_none(), "a single client has no balancer");
}

#[tokio::test]
async fn the_proxy_is_a_tower_service() {
    let client = service_fn(|n: u32| async move { Ok::<_, BoxError>(n + 1) });
    let proxy = ServiceProxy::builder("service")
        .build_client(client)
        .unwrap();
    let outer = ServiceBuilder::new()
        .map_response(|n: u32| n * 10)
        .service(proxy);
    assert_eq!(outer.oneshot(1).await.unwrap(), 20);
}

#[tokio::test(start_paused = true)]
async fn service_builder_ext_puts_retry_outside_the_breaker() {
    let inner_calls = calls();
    let seen = inner_calls.clone();
    let failing = service_fn(move |_: ()| {
        seen.fetch_add(1, Ordering::Relaxed);
        async { Err::<(), _>(std::io::Error::other("down")) }
    });
    let config = CircuitBreakerConfig::builder()
        .failure_threshold(1)
        .build()
        .unwrap();
    let breaker = CircuitBreaker::new("by-hand", config);
    let service = ServiceBuilder::new()
        .retry_policy(quick_retries(3))
        .circuit_breaker(breaker.clone())
        .service(failing);

    let error = service.oneshot(()).await.unwrap_err();
    assert!(error.downcast_ref::<CircuitOpenError>().is_some());
    assert_eq!(
        count(&inner_calls),
        1,
        "the retry met the open breaker and stopped"
    );
}

// ===== configuration =====

fn field_of<T>(result: Result<T, ConfigError>) -> &'static str {
    match result {
        Ok(_) => "no error",
        Err(error) => error.field(),
    }
}

fn echo() -> impl tower::Service<u32, Response = u32, Error = BoxError, Future: Send>
       + Clone
       + Send
       + Sync
       + 'static {
    service_fn(|n: u32| async move { Ok::<_, BoxError>(n) })
}

#[tokio::test]
async fn the_builder_names_the_setting_it_rejects() {
    let builder = || ServiceProxy::builder("checked");
    let zero = Duration::ZERO;
    let second = Duration::from_secs(1);
    assert_eq!(
        field_of(ServiceProxy::builder("").build_client(echo())),
        "name"
    );
    assert_eq!(
        field_of(builder().timeout(zero).build_client(echo())),
        "timeout"
    );
    let attempt = builder().attempt_timeout(zero).build_client(echo());
    assert_eq!(field_of(attempt), "attempt_timeout");
    let longer = builder().timeout(second).attempt_timeout(second * 2);
    assert_eq!(field_of(longer.build_client(echo())), "attempt_timeout");

    let discover = registry(&["a"]).discover(|_: &ServiceInstance| echo());
    let ejection = builder().max_ejection_percent(101).build(discover);
    assert_eq!(field_of(ejection), "max_ejection_percent");
}

#[test]
fn a_proxy_built_outside_a_runtime_serves_calls_made_inside_one() {
    let discover = registry(&["a"]).discover(|_: &ServiceInstance| echo());
    let proxy = ServiceProxy::builder("no-runtime").build(discover).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    assert_eq!(runtime.block_on(proxy.call(7)).unwrap(), 7);
}
