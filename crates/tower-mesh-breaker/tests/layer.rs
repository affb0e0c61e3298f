//! The tower middleware: shared state across clones, fail-fast rejection, outcome
//! classification, latency and cancellation.

use std::convert::Infallible;
use std::time::Duration;

use tokio::time::{advance, sleep};
use tokio_test::{assert_pending, assert_ready_ok, task};
use tower::{service_fn, BoxError, Layer, Service, ServiceBuilder, ServiceExt};
use tower_mesh_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, CircuitBreakerService,
    CircuitOpenError, CircuitState, Permit, ResponseFuture, SlidingWindow,
};
use tower_mesh_core::{classify_result_fn, Outcome};

fn config(failures: u32) -> CircuitBreakerConfig {
    CircuitBreakerConfig::builder()
        .failure_threshold(failures)
        .build()
        .unwrap()
}

async fn failing(_: ()) -> Result<(), std::io::Error> {
    Err(std::io::Error::other("refused"))
}

fn is_open(error: &BoxError) -> bool {
    error.downcast_ref::<CircuitOpenError>().is_some()
}

#[tokio::test(start_paused = true)]
async fn a_clone_per_request_feeds_one_breaker() {
    let breaker = CircuitBreaker::new("per-request", config(3));
    let service = CircuitBreakerLayer::new(breaker.clone()).layer(service_fn(failing));

    for _ in 0..3 {
        let error = service.clone().oneshot(()).await.unwrap_err();
        assert!(!is_open(&error), "the inner error comes through: {error}");
    }
    assert_eq!(breaker.state(), CircuitState::Open);
    assert!(is_open(&service.clone().oneshot(()).await.unwrap_err()));
}

#[tokio::test(start_paused = true)]
async fn every_service_made_by_one_layer_shares_its_breaker() {
    let layer = CircuitBreakerLayer::new(CircuitBreaker::new("shared", config(2)));
    let first = layer.layer(service_fn(failing));
    let second = layer.layer(service_fn(failing));

    assert!(!is_open(&first.oneshot(()).await.unwrap_err()));
    assert!(!is_open(&second.clone().oneshot(()).await.unwrap_err()));
    assert_eq!(layer.breaker().state(), CircuitState::Open);
    assert!(is_open(&second.oneshot(()).await.unwrap_err()));
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_fails_fast_without_reaching_the_inner_service() {
    let (inner, mut handle) = tower_test::mock::pair::<(), ()>();
    let breaker = CircuitBreaker::new("mock", config(1));
    let mut service = CircuitBreakerLayer::new(breaker.clone()).layer(inner);
    breaker.force_open();

    handle.allow(1);
    service
        .ready()
        .await
        .expect("an open circuit never fails poll_ready");
    let error = service.call(()).await.unwrap_err();
    let open = error
        .downcast_ref::<CircuitOpenError>()
        .expect("a CircuitOpenError");
    assert_eq!(open.name(), "mock");

    let mut next = task::spawn(handle.next_request());
    assert_pending!(next.poll(), "the inner service never saw the request");
}

#[tokio::test(start_paused = true)]
async fn poll_ready_stays_ready_while_the_circuit_is_open() {
    let breaker = CircuitBreaker::new("ready", config(1));
    let mut service = CircuitBreakerLayer::new(breaker.clone()).layer(service_fn(failing));
    breaker.force_open();
    let mut ready = task::spawn(futures_util::future::poll_fn(|cx| service.poll_ready(cx)));
    assert_ready_ok!(ready.poll());
}

#[tokio::test(start_paused = true)]
async fn the_classifier_decides_which_responses_are_failures() {
    let status_5xx = classify_result_fn(|result: Result<&u16, &Infallible>| match result {
        Ok(status) if *status >= 500 => Outcome::Failure,
        _ => Outcome::Success,
    });
    let breaker = CircuitBreaker::new("status", config(2));
    let service = ServiceBuilder::new()
        .layer(CircuitBreakerLayer::new(breaker.clone()).with_classifier(status_5xx))
        .service(service_fn(|status: u16| async move {
            Ok::<_, Infallible>(status)
        }));

    assert_eq!(
        service.clone().oneshot(503).await.unwrap(),
        503,
        "the response is returned"
    );
    assert_eq!(service.clone().oneshot(404).await.unwrap(), 404);
    assert_eq!(service.clone().oneshot(500).await.unwrap(), 500);
    assert_eq!(service.clone().oneshot(502).await.unwrap(), 502);
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn slow_responses_trip_the_breaker_through_the_layer() {
    let config = CircuitBreakerConfig::builder()
        .sliding_window(SlidingWindow::count(4))
        .minimum_calls(2)
        .slow_call_duration(Duration::from_secs(1))
        .slow_call_rate_threshold(60.0)
        .build()
        .unwrap();
    let breaker = CircuitBreaker::new("slow", config);
    let slow = service_fn(|delay: u64| async move {
        sleep(Duration::from_millis(delay)).await;
        Ok::<_, Infallible>(())
    });
    let service = CircuitBreakerLayer::new(breaker.clone()).layer(slow);

    service.clone().oneshot(1_500).await.unwrap();
    service.clone().oneshot(200).await.unwrap();
    let metrics = breaker.metrics();
    assert_eq!(metrics.slow_calls_in_window, 1);
    assert_eq!(breaker.state(), CircuitState::Closed, "1 of 2 slow is 50 %");

    // A call of exactly the threshold is slow: 2 of 3 is 67 %, past 60 %.
    service.clone().oneshot(1_000).await.unwrap();
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_response_future_frees_its_probe_slot() {
    let breaker_config = CircuitBreakerConfig::builder()
        .failure_threshold(1)
        .half_open_max_calls(1)
        .build()
        .unwrap();
    let breaker = CircuitBreaker::new("cancel", breaker_config);
    let (inner, mut handle) = tower_test::mock::pair::<(), ()>();
    let mut service = CircuitBreakerLayer::new(breaker.clone()).layer(inner);
    handle.allow(10);
    breaker.try_acquire().unwrap().failure();
    advance(Duration::from_secs(30)).await;

    service.ready().await.unwrap();
    let probe = service.call(());
    assert_eq!(breaker.metrics().half_open_probes, 1);
    service.ready().await.unwrap();
    assert!(
        is_open(&service.call(()).await.unwrap_err()),
        "the only slot is taken"
    );

    drop(probe);
    assert_eq!(breaker.metrics().half_open_probes, 0);
    assert_eq!(
        breaker.state(),
        CircuitState::HalfOpen,
        "a cancelled probe decides nothing"
    );
    service.ready().await.unwrap();
    let retry = service.call(());
    // The cancelled probe's request reached the mock first; nobody awaits its answer.
    let _cancelled = handle.next_request().await.unwrap();
    let (_, respond) = handle.next_request().await.unwrap();
    respond.send_response(());
    retry.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_buffered_service_keeps_working_across_open_and_close() {
    let breaker_config = CircuitBreakerConfig::builder()
        .failure_threshold(1)
        .success_threshold(1)
        .build()
        .unwrap();
    let breaker = CircuitBreaker::new("buffered", breaker_config);
    let flaky = service_fn(|fail: bool| async move {
        if fail {
            Err(std::io::Error::other("flaky"))
        } else {
            Ok(())
        }
    });
    let service = ServiceBuilder::new()
        .buffer(8)
        .layer(CircuitBreakerLayer::new(breaker.clone()))
        .service(flaky);

    assert!(service.clone().oneshot(true).await.is_err());
    let rejected = service.clone().oneshot(false).await.unwrap_err();
    assert!(
        is_open(&rejected),
        "rejected, and the buffer survives: {rejected}"
    );

    advance(Duration::from_secs(30)).await;
    service
        .clone()
        .oneshot(false)
        .await
        .expect("a probe through the same buffer");
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn errors_from_the_inner_service_count_as_failures_by_default() {
    let breaker = CircuitBreaker::new("default", CircuitBreakerConfig::default());
    let service = CircuitBreakerLayer::new(breaker.clone()).layer(service_fn(failing));
    for _ in 0..5 {
        let _ = service.clone().oneshot(()).await;
    }
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[test]
fn public_types_are_send_sync_and_static() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    type Svc = CircuitBreakerService<tower::util::BoxCloneSyncService<(), (), BoxError>>;
    type Fut =
        ResponseFuture<std::future::Ready<Result<(), BoxError>>, tower_mesh_core::ErrorsAsFailures>;
    assert_send_sync::<CircuitBreaker>();
    assert_send_sync::<CircuitBreakerLayer>();
    assert_send_sync::<Svc>();
    assert_send_sync::<Fut>();
    assert_send_sync::<Permit>();
    assert_send_sync::<CircuitOpenError>();
    assert_send_sync::<CircuitBreakerConfig>();
}

#[tokio::test(start_paused = true)]
async fn a_leaked_breaker_stays_the_same_breaker_through_the_layer() {
    let breaker = CircuitBreaker::new("leaked", config(2));
    let leaked = breaker.clone().leak();
    let service = CircuitBreakerLayer::new(leaked.clone()).layer(service_fn(failing));

    for _ in 0..2 {
        assert!(!is_open(&service.clone().oneshot(()).await.unwrap_err()));
    }
    assert_eq!(
        breaker.state(),
        CircuitState::Open,
        "the original handle sees the trip"
    );
    breaker.reset();
    assert_eq!(
        leaked.clone().state(),
        CircuitState::Closed,
        "and the leaked one the reset"
    );
}
