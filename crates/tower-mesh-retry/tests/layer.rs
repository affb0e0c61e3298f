//! The middleware and the plain-function helpers: what is and is not retried,
//! deadlines, requests that cannot be copied, cancellation mid-backoff, and use
//! as a `tower::retry::Policy`.

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::{ms, Answer, Scripted};
use tokio::time::{advance, Instant};
use tokio_test::{assert_pending, assert_ready, task};
use tower::{service_fn, Layer, Service, ServiceBuilder, ServiceExt};
use tower_mesh_breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer};
use tower_mesh_core::{classify_result_fn, BoxError, Outcome};
use tower_mesh_retry::{
    with_retry, Backoff, ResponseFuture, Retry, RetryBudget, RetryLayer, RetryPolicy,
};

fn constant(delay: Duration, retries: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .backoff(Backoff::constant(delay))
        .jitter(0.0)
        .max_retries(retries)
        .build()
        .unwrap()
}

/// 5xx responses fail, other responses succeed, errors fail; 404 says nothing.
fn statuses() -> impl Fn(Result<&u16, &&'static str>) -> Outcome + Clone {
    |result| match result {
        Ok(404) => Outcome::Ignored,
        Ok(status) if *status >= 500 => Outcome::Failure,
        Ok(_) => Outcome::Success,
        Err(_) => Outcome::Failure,
    }
}

#[tokio::test(start_paused = true)]
async fn a_failure_is_retried_until_an_attempt_succeeds() {
    let service = Scripted::failing(2);
    let response = RetryLayer::new(constant(ms(10), 3))
        .layer(service.clone())
        .oneshot(())
        .await;
    assert_eq!(response, Ok(200));
    assert_eq!(service.attempts(), 3);
}

#[tokio::test(start_paused = true)]
async fn the_last_error_is_returned_unchanged_once_the_retries_are_spent() {
    let service = Scripted::new(&[Err("first"), Err("second"), Err("third")]);
    let result = RetryLayer::new(constant(ms(10), 2))
        .layer(service.clone())
        .oneshot(())
        .await;
    assert_eq!(result, Err("third"));
    assert_eq!(service.attempts(), 3);
}

#[tokio::test(start_paused = true)]
async fn zero_retries_sends_one_attempt() {
    let service = Scripted::down();
    let _ = RetryLayer::new(RetryPolicy::never())
        .layer(service.clone())
        .oneshot(())
        .await;
    assert_eq!(service.attempts(), 1);
}

// ===== what is not retried =====

#[tokio::test(start_paused = true)]
async fn successes_and_ignored_outcomes_are_never_retried() {
    let policy = constant(ms(10), 3).with_classifier(classify_result_fn(statuses()));
    for status in [200, 404] {
        let service = Scripted::new(&[Ok(status), Ok(200)]);
        let response = RetryLayer::new(policy.clone())
            .layer(service.clone())
            .oneshot(())
            .await;
        assert_eq!(response, Ok(status));
        assert_eq!(service.attempts(), 1, "status {status}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_response_is_retried_like_an_error() {
    let policy = constant(ms(10), 3).with_classifier(classify_result_fn(statuses()));
    let service = Scripted::new(&[Ok(503), Ok(502), Ok(200)]);
    let response = RetryLayer::new(policy)
        .layer(service.clone())
        .oneshot(())
        .await;
    assert_eq!(response, Ok(200));
    assert_eq!(service.attempts(), 3);
}

#[tokio::test(start_paused = true)]
async fn failures_the_predicate_declines_are_returned_without_a_retry() {
    let policy = constant(ms(10), 3)
        .retry_if(|result: Result<&u16, &&str>| !matches!(result, Err(&"bad request")));
    let declined = Scripted::new(&[Err("bad request"), Ok(200)]);
    let result = RetryLayer::new(policy.clone())
        .layer(declined.clone())
        .oneshot(())
        .await;
    assert_eq!(result, Err("bad request"));
    assert_eq!(declined.attempts(), 1);

    let accepted = Scripted::new(&[Err("unavailable"), Ok(200)]);
    let response = RetryLayer::new(policy)
        .layer(accepted.clone())
        .oneshot(())
        .await;
    assert_eq!(response, Ok(200));
}

#[tokio::test(start_paused = true)]
async fn a_call_rejected_by_an_open_circuit_breaker_is_not_retried_against_it() {
    let breaker = CircuitBreaker::new("downstream", CircuitBreakerConfig::default());
    breaker.force_open();
    let calls = Arc::new(AtomicU32::new(0));
    let counted = calls.clone();
    let inner = service_fn(move |_: ()| {
        counted.fetch_add(1, Ordering::Relaxed);
        async { Ok::<_, BoxError>(()) }
    });
    let budget = RetryBudget::default();
    let policy = RetryPolicy::builder()
        .budget(budget.clone())
        .build()
        .unwrap();
    let service = ServiceBuilder::new()
        .layer(RetryLayer::new(policy))
        .layer(CircuitBreakerLayer::new(breaker))
        .service(inner);

    let started = Instant::now();
    let error = service.oneshot(()).await.unwrap_err();
    assert!(tower_mesh_retry::is_circuit_open(&error), "{error}");
    assert_eq!(started.elapsed(), Duration::ZERO, "no backoff was waited");
    assert_eq!(calls.load(Ordering::Relaxed), 0);
    assert_eq!(budget.remaining(), 100, "no retry was spent");
}

#[test]
fn open_circuits_are_found_in_boxed_errors_and_their_sources() {
    #[derive(Debug)]
    struct Wrapper(BoxError);
    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("wrapped")
        }
    }
    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&*self.0)
        }
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let open = runtime.block_on(async {
        let breaker = CircuitBreaker::new("b", CircuitBreakerConfig::default());
        breaker.force_open();
        breaker.try_acquire().unwrap_err()
    });
    let boxed: BoxError = Box::new(open.clone());
    let nested: BoxError = Box::new(Wrapper(Box::new(open.clone())));
    let other: BoxError = "refused".into();
    assert!(tower_mesh_retry::is_circuit_open(&open));
    assert!(tower_mesh_retry::is_circuit_open(&boxed));
    assert!(tower_mesh_retry::is_circuit_open(&nested));
    assert!(!tower_mesh_retry::is_circuit_open(&other));
    assert!(!tower_mesh_retry::is_circuit_open(&std::io::Error::other(
        "x"
    )));
}

// ===== requests that cannot be copied =====

#[tokio::test(start_paused = true)]
async fn a_request_the_hook_cannot_copy_is_sent_once_and_its_failure_returned() {
    // Even-numbered requests carry a body that can be read only once.
    let policy =
        constant(ms(10), 3).replay_with(|request: &u32| (request % 2 == 1).then_some(*request));
    let one_shot = Scripted::failing(1);
    let result = RetryLayer::new(policy.clone())
        .layer(one_shot.clone())
        .oneshot(2)
        .await;
    assert_eq!(result, Err("unavailable"));
    assert_eq!(one_shot.attempts(), 1);

    let replayable = Scripted::failing(1);
    let response = RetryLayer::new(policy)
        .layer(replayable.clone())
        .oneshot(3)
        .await;
    assert_eq!(response, Ok(200));
    assert_eq!(replayable.attempts(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_request_copyable_only_once_gets_exactly_one_retry() {
    let copies = Arc::new(AtomicU32::new(0));
    let counter = copies.clone();
    let policy = constant(ms(10), 5).replay_with(move |request: &u8| {
        (counter.fetch_add(1, Ordering::Relaxed) == 0).then_some(*request)
    });
    let service = Scripted::down();
    let _ = RetryLayer::new(policy)
        .layer(service.clone())
        .oneshot(0u8)
        .await;
    assert_eq!(service.attempts(), 2);
}

// ===== deadline =====

#[tokio::test(start_paused = true)]
async fn no_retry_starts_after_the_deadline() {
    let policy = RetryPolicy::builder()
        .backoff(Backoff::constant(ms(300)))
        .jitter(0.0)
        .max_retries(10)
        .deadline(ms(1_000))
        .build()
        .unwrap();
    let service = Scripted::down();
    let started = Instant::now();
    let result = RetryLayer::new(policy)
        .layer(service.clone())
        .oneshot(())
        .await;

    assert_eq!(result, Err("unavailable"));
    assert_eq!(
        service.attempts(),
        4,
        "retries at 300, 600 and 900 ms; 1200 ms is too late"
    );
    assert_eq!(
        started.elapsed(),
        ms(900),
        "the last failure is returned at once"
    );
}

#[tokio::test(start_paused = true)]
async fn the_deadline_counts_the_time_spent_in_attempts() {
    let policy = RetryPolicy::builder()
        .backoff(Backoff::constant(ms(100)))
        .jitter(0.0)
        .max_retries(10)
        .deadline(ms(950))
        .build()
        .unwrap();
    let attempts = AtomicU32::new(0);
    let result = policy
        .execute(|| async {
            attempts.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(ms(400)).await;
            Err::<(), _>("timed out")
        })
        .await;
    assert_eq!(result, Err("timed out"));
    // Attempts end at 400 and 900 ms; a retry at 1000 ms would start past 950 ms.
    assert_eq!(attempts.load(Ordering::Relaxed), 2);
}

// ===== cancellation =====

#[tokio::test(start_paused = true)]
async fn dropping_the_response_future_mid_backoff_cancels_the_retry() {
    let service = Scripted::down();
    let mut retry = RetryLayer::new(constant(ms(500), 3)).layer(service.clone());
    let mut response = task::spawn(retry.call(()));

    assert_pending!(response.poll(), "waiting out the first backoff");
    advance(ms(200)).await;
    assert_pending!(response.poll());
    drop(response);

    advance(Duration::from_secs(10)).await;
    assert_eq!(
        service.attempts(),
        1,
        "no attempt after the future was dropped"
    );
}

#[tokio::test(start_paused = true)]
async fn a_pending_backoff_completes_when_its_delay_has_passed() {
    let service = Scripted::failing(1);
    let mut retry = RetryLayer::new(constant(ms(500), 3)).layer(service.clone());
    let mut response = task::spawn(retry.call(()));

    assert_pending!(response.poll());
    advance(ms(499)).await;
    assert_pending!(response.poll());
    advance(ms(1)).await;
    assert_eq!(assert_ready!(response.poll()), Ok(200));
}

#[tokio::test(start_paused = true)]
async fn dropping_an_execute_future_mid_backoff_stops_further_attempts() {
    let attempts = Arc::new(AtomicU32::new(0));
    let counted = attempts.clone();
    let policy = constant(ms(500), 3);
    let mut future = task::spawn(async move {
        policy
            .execute(|| {
                counted.fetch_add(1, Ordering::Relaxed);
                async { Err::<(), _>("down") }
            })
            .await
    });
    assert_pending!(future.poll());
    drop(future);
    advance(Duration::from_secs(5)).await;
    assert_eq!(attempts.load(Ordering::Relaxed), 1);
}

// ===== the budget and cancelled retries =====

/// A budget of exactly ten retries (a floor of one a second over ten seconds).
fn ten_retries() -> RetryBudget {
    RetryBudget::builder()
        .ratio(0.0)
        .min_per_second(1)
        .build()
        .unwrap()
}

fn budgeted(budget: &RetryBudget) -> RetryPolicy {
    RetryPolicy::builder()
        .backoff(Backoff::constant(ms(500)))
        .jitter(0.0)
        .budget(budget.clone())
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_retry_cancelled_during_its_backoff_goes_back_to_the_budget() {
    let budget = ten_retries();
    let mut retry = RetryLayer::new(budgeted(&budget)).layer(Scripted::down());
    let mut response = task::spawn(retry.call(()));
    assert_pending!(response.poll(), "waiting to retry");
    assert_eq!(budget.remaining(), 9, "the retry is counted while it waits");
    drop(response);
    assert_eq!(budget.remaining(), 10);
}

#[tokio::test(start_paused = true)]
async fn a_retry_sent_stays_counted_when_its_call_is_dropped_later() {
    let budget = ten_retries();
    let (inner, mut handle) = tower_test::mock::pair::<(), u16>();
    handle.allow(2);
    let mut retry = RetryLayer::new(budgeted(&budget)).layer(inner);
    let mut response = task::spawn(retry.ready().await.unwrap().call(()));
    assert_pending!(response.poll());
    let (_, first) = handle.next_request().await.unwrap();
    first.send_error("down");
    assert_pending!(response.poll());
    advance(ms(500)).await;
    assert_pending!(response.poll(), "the retry is in flight");
    let _second = handle.next_request().await.unwrap();
    drop(response);
    assert_eq!(budget.remaining(), 9);
}

#[tokio::test(start_paused = true)]
async fn an_execute_cancelled_during_its_backoff_refunds_its_retry() {
    let budget = ten_retries();
    let policy = budgeted(&budget);
    let mut future =
        task::spawn(async move { policy.execute(|| async { Err::<(), _>("down") }).await });
    assert_pending!(future.poll());
    assert_eq!(budget.remaining(), 9);
    drop(future);
    assert_eq!(budget.remaining(), 10);
}

#[tokio::test(start_paused = true)]
async fn towers_retry_cancelled_during_its_backoff_refunds_its_retry() {
    let budget = ten_retries();
    let retry = tower::retry::Retry::new(budgeted(&budget), Scripted::down());
    let mut response = task::spawn(retry.oneshot(()));
    assert_pending!(response.poll());
    assert_eq!(budget.remaining(), 9);
    drop(response);
    assert_eq!(budget.remaining(), 10);
}

// ===== readiness =====

#[tokio::test(start_paused = true)]
async fn a_retry_waits_for_the_inner_service_to_be_ready() {
    let (inner, mut handle) = tower_test::mock::pair::<(), u16>();
    let mut retry = RetryLayer::new(constant(ms(10), 1)).layer(inner);
    handle.allow(1);
    retry.ready().await.unwrap();
    let mut response = task::spawn(retry.call(()));

    assert_pending!(response.poll());
    let (_, reply) = handle.next_request().await.unwrap();
    reply.send_error("reset");
    assert_pending!(response.poll());
    advance(ms(10)).await;
    assert_pending!(response.poll(), "the inner service is not ready");

    handle.allow(1);
    assert_pending!(response.poll());
    let (_, reply) = handle.next_request().await.unwrap();
    reply.send_response(200);
    assert_eq!(assert_ready!(response.poll()).unwrap(), 200);
}

// ===== plain functions and tower's Retry =====

#[tokio::test(start_paused = true)]
async fn with_retry_retries_an_async_function_with_a_copy_of_its_argument() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let lookup = with_retry(constant(ms(10), 2), move |key: String| {
        let log = log.clone();
        async move {
            let mut log = log.lock().unwrap();
            log.push(key.clone());
            if log.len() < 3 {
                Err("busy")
            } else {
                Ok(key.len())
            }
        }
    });
    assert_eq!(lookup.call("ab".to_string()).await, Ok(2));
    assert_eq!(*seen.lock().unwrap(), ["ab", "ab", "ab"]);
}

#[tokio::test(start_paused = true)]
async fn the_policy_drives_towers_own_retry_middleware() {
    let service = Scripted::failing(2);
    let budget = RetryBudget::builder()
        .ratio(0.0)
        .min_per_second(1)
        .build()
        .unwrap();
    let policy = RetryPolicy::builder()
        .backoff(Backoff::linear(ms(100), ms(100)))
        .jitter(0.0)
        .budget(budget.clone())
        .build()
        .unwrap();
    let retry = tower::retry::Retry::new(policy, service.clone());

    assert_eq!(retry.oneshot(()).await, Ok(200));
    assert_eq!(service.attempts(), 3);
    assert_eq!(service.gaps(), [ms(100), ms(200)]);
    assert_eq!(
        budget.remaining(),
        8,
        "two of the floor's ten retries were spent"
    );
}

#[tokio::test(start_paused = true)]
async fn towers_retry_with_the_policy_honours_the_retry_limit_and_classifier() {
    let service = Scripted::new(&[Ok(503)]);
    let policy = constant(ms(1), 2).with_classifier(classify_result_fn(statuses()));
    let result = tower::retry::Retry::new(policy, service.clone())
        .oneshot(())
        .await;
    assert_eq!(result, Ok(503));
    assert_eq!(service.attempts(), 3);
}

// ===== sharing and types =====

#[tokio::test(start_paused = true)]
async fn clones_of_a_retry_service_spend_one_budget() {
    let budget = RetryBudget::builder()
        .ratio(0.0)
        .min_per_second(1)
        .window(Duration::from_secs(2))
        .build()
        .unwrap();
    let policy = RetryPolicy::builder()
        .backoff(Backoff::constant(ms(1)))
        .max_retries(1)
        .budget(budget.clone())
        .build()
        .unwrap();
    let service: Retry<Scripted> = RetryLayer::new(policy).layer(Scripted::down());
    for _ in 0..4 {
        let _ = service.clone().oneshot(()).await;
    }
    assert_eq!(budget.remaining(), 0);
}

#[test]
fn policies_services_and_futures_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    fn assert_send<T: Send + 'static>() {}
    assert_send_sync::<RetryPolicy>();
    assert_send_sync::<RetryBudget>();
    assert_send_sync::<RetryLayer>();
    assert_send_sync::<Retry<Scripted>>();
    assert_send_sync::<
        ResponseFuture<
            Scripted,
            (),
            tower_mesh_core::ErrorsAsFailures,
            tower_mesh_retry::AnyFailure,
            tower_mesh_retry::CloneRequest,
        >,
    >();
    assert_send_sync::<tower_mesh_retry::Delay>();
    assert_send::<Answer>();
}

#[tokio::test(start_paused = true)]
async fn a_classifier_that_reads_latency_sees_each_attempt_timed_on_its_own() {
    // The first attempt takes 300 ms, the retry 50 ms; anything over 100 ms fails.
    let durations = Arc::new(std::sync::Mutex::new(vec![ms(300), ms(50)]));
    let inner = service_fn(move |_: ()| {
        let took = durations.lock().unwrap().remove(0);
        async move {
            tokio::time::sleep(took).await;
            Ok::<_, &'static str>(took)
        }
    });
    let too_slow = tower_mesh_core::classify_fn(|_: Result<&Duration, &&str>, latency| {
        if latency > ms(100) {
            Outcome::Failure
        } else {
            Outcome::Success
        }
    });
    let policy = constant(ms(10), 3).with_classifier(too_slow);

    let response = RetryLayer::new(policy).layer(inner).oneshot(()).await;
    assert_eq!(
        response,
        Ok(ms(50)),
        "the slow answer was retried, the quick one kept"
    );
}
