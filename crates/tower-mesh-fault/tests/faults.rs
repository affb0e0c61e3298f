//! Every kind of fault, on paused time, with seeded draws.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tower::Layer;
use tower::{service_fn, BoxError, Service, ServiceExt};
use tower_mesh_fault::{
    AbortKind, DelayKind, FaultConfig, FaultHandle, FaultInjectedError, FaultLayer,
};

/// A service counting the requests that reach it.
fn counted(
    reached: Arc<AtomicU32>,
) -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone {
    service_fn(move |x: u32| {
        reached.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, BoxError>(x) }
    })
}

fn aborting(percent: f64) -> FaultConfig {
    FaultConfig::builder()
        .abort(percent, AbortKind::Error)
        .build()
        .unwrap()
}

fn delaying(kind: DelayKind) -> FaultConfig {
    FaultConfig::builder().delay(100.0, kind).build().unwrap()
}

/// Which of `n` calls were aborted.
async fn aborted_calls(handle: &FaultHandle, n: u32) -> Vec<u32> {
    let service = FaultLayer::new(handle.clone()).layer(counted(Arc::default()));
    let mut aborted = Vec::new();
    for i in 0..n {
        if let Err(error) = service.clone().oneshot(i).await {
            assert!(
                error.downcast_ref::<FaultInjectedError>().is_some(),
                "{error}"
            );
            aborted.push(i);
        }
    }
    aborted
}

#[tokio::test(start_paused = true)]
async fn without_faults_every_request_goes_through() {
    let reached = Arc::new(AtomicU32::new(0));
    let service =
        FaultLayer::new(FaultHandle::new(FaultConfig::none())).layer(counted(reached.clone()));
    for i in 0..100 {
        assert_eq!(service.clone().oneshot(i).await.unwrap(), i);
    }
    assert_eq!(reached.load(Ordering::SeqCst), 100);
}

#[tokio::test(start_paused = true)]
async fn an_aborted_request_never_reaches_the_service() {
    let reached = Arc::new(AtomicU32::new(0));
    let handle = FaultHandle::with_seed(aborting(100.0), 1);
    let service = FaultLayer::new(handle.clone()).layer(counted(reached.clone()));
    let error = service.oneshot(1).await.unwrap_err();
    assert_eq!(error.to_string(), "fault injected: request aborted");
    assert_eq!(reached.load(Ordering::SeqCst), 0);
    assert_eq!(handle.stats().aborted, 1);
}

#[tokio::test(start_paused = true)]
async fn the_abort_share_holds_over_many_requests() {
    let handle = FaultHandle::with_seed(aborting(30.0), 42);
    let aborted = aborted_calls(&handle, 10_000).await.len();
    assert!(
        (2_800..=3_200).contains(&aborted),
        "{aborted} of 10,000 aborted"
    );
    assert_eq!(handle.stats().requests, 10_000);
}

#[tokio::test(start_paused = true)]
async fn the_same_seed_aborts_the_same_requests() {
    let first = aborted_calls(&FaultHandle::with_seed(aborting(10.0), 9), 500).await;
    let again = aborted_calls(&FaultHandle::with_seed(aborting(10.0), 9), 500).await;
    let other = aborted_calls(&FaultHandle::with_seed(aborting(10.0), 10), 500).await;
    assert_eq!(first, again);
    assert_ne!(first, other);
}

#[tokio::test(start_paused = true)]
async fn a_fixed_delay_holds_each_request_that_long() {
    let handle = FaultHandle::with_seed(delaying(DelayKind::Fixed(Duration::from_secs(2))), 3);
    let service = FaultLayer::new(handle.clone()).layer(counted(Arc::default()));
    let started = Instant::now();
    assert_eq!(service.oneshot(5).await.unwrap(), 5);
    assert_eq!(started.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn drawn_delays_stay_within_their_bounds() {
    let (min, max) = (Duration::from_millis(10), Duration::from_millis(50));
    let cap = Duration::from_millis(300);
    let kinds = [
        (DelayKind::Uniform { min, max }, min, max),
        (
            DelayKind::Exponential {
                mean: Duration::from_millis(100),
                max: cap,
            },
            Duration::ZERO,
            cap,
        ),
    ];
    for (kind, low, high) in kinds {
        let service = FaultLayer::new(FaultHandle::with_seed(delaying(kind), 5))
            .layer(counted(Arc::default()));
        let mut seen = Vec::new();
        for i in 0..200 {
            let started = Instant::now();
            service.clone().oneshot(i).await.unwrap();
            let delay = started.elapsed();
            assert!(delay >= low && delay <= high, "{kind:?}: {delay:?}");
            seen.push(delay);
        }
        // Timers tick in milliseconds, so a 40 ms range has at most 41 values.
        seen.sort();
        seen.dedup();
        assert!(
            seen.len() > 20,
            "{kind:?} draws vary: {} distinct",
            seen.len()
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_delayed_abort_waits_then_fails_without_reaching_the_service() {
    let reached = Arc::new(AtomicU32::new(0));
    let config = FaultConfig::builder()
        .delay(100.0, DelayKind::Fixed(Duration::from_secs(1)))
        .abort(100.0, AbortKind::Error)
        .build()
        .unwrap();
    let service =
        FaultLayer::new(FaultHandle::with_seed(config, 2)).layer(counted(reached.clone()));
    let started = Instant::now();
    assert!(service.oneshot(1).await.is_err());
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    assert_eq!(reached.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn faults_change_while_traffic_flows() {
    let handle = FaultHandle::with_seed(FaultConfig::none(), 4);
    let service = FaultLayer::new(handle.clone()).layer(counted(Arc::default()));
    assert!(service.clone().oneshot(1).await.is_ok());
    handle.set(aborting(100.0));
    assert!(service.clone().oneshot(2).await.is_err());
    handle.disable();
    assert!(service.clone().oneshot(3).await.is_ok());
    assert_eq!(handle.stats().aborted, 1);
}

#[tokio::test(start_paused = true)]
async fn a_request_dropped_during_its_delay_is_never_sent() {
    let reached = Arc::new(AtomicU32::new(0));
    let handle = FaultHandle::with_seed(delaying(DelayKind::Fixed(Duration::from_secs(5))), 6);
    let mut service = FaultLayer::new(handle).layer(counted(reached.clone()));
    service.ready().await.unwrap();
    let call = service.call(1);
    let timed_out = tokio::time::timeout(Duration::from_secs(1), call).await;
    assert!(timed_out.is_err(), "still delayed after 1 s");
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "the dropped request was not sent"
    );
}

#[test]
fn invalid_faults_are_rejected_by_field() {
    let cases = [
        (
            FaultConfig::builder().abort(-1.0, AbortKind::Error),
            "abort",
        ),
        (
            FaultConfig::builder().abort(f64::NAN, AbortKind::Error),
            "abort",
        ),
        (
            FaultConfig::builder().abort(5.0, AbortKind::Status(42)),
            "abort",
        ),
        (
            FaultConfig::builder().delay(101.0, DelayKind::Fixed(Duration::ZERO)),
            "delay",
        ),
        (
            FaultConfig::builder().delay(
                5.0,
                DelayKind::Uniform {
                    min: Duration::from_secs(2),
                    max: Duration::from_secs(1),
                },
            ),
            "delay",
        ),
    ];
    for (builder, field) in cases {
        assert_eq!(builder.build().unwrap_err().field(), field);
    }
}

#[cfg(feature = "http")]
#[tokio::test(start_paused = true)]
async fn an_http_abort_answers_with_its_status() {
    use tower_mesh_fault::HttpFaultLayer;

    let config = FaultConfig::builder()
        .abort(100.0, AbortKind::Status(503))
        .build()
        .unwrap();
    let inner = service_fn(|_: http::Request<()>| async {
        Ok::<_, BoxError>(http::Response::new(String::from("real")))
    });
    let service = HttpFaultLayer::new(FaultHandle::with_seed(config, 8)).layer(inner);
    let response = service.oneshot(http::Request::new(())).await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.body(), "");
}

#[tokio::test(start_paused = true)]
async fn a_status_abort_through_the_plain_layer_is_an_error_naming_the_status() {
    let config = FaultConfig::builder()
        .abort(100.0, AbortKind::Status(502))
        .build()
        .unwrap();
    let service = FaultLayer::new(FaultHandle::with_seed(config, 8)).layer(counted(Arc::default()));
    let error = service.oneshot(1).await.unwrap_err();
    let injected = error.downcast_ref::<FaultInjectedError>().unwrap();
    assert_eq!(injected.status(), Some(502));
}
