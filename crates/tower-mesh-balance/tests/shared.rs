//! `SharedBalancer`: one balancer behind clones, without a task of its own.

mod support;

use std::collections::HashSet;
use std::future::Ready;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use support::{discover, endpoint, Balancer};
use tokio_test::{assert_pending, assert_ready};
use tower::{Service, ServiceExt};
use tower_mesh_balance::{BalancerPanickedError, BoxError, LoadBalancer, SharedBalancer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_through_clones_are_each_answered_once_during_churn() {
    let (discover, handle) = discover();
    for key in 0..4 {
        handle.insert(key, endpoint(key).0);
    }
    let balancer: Balancer = LoadBalancer::new(discover);
    let shared = SharedBalancer::new(balancer);

    let churn = tokio::spawn(async move {
        for key in 4..40 {
            handle.insert(key, endpoint(key).0);
            handle.remove(key - 4);
            tokio::task::yield_now().await;
        }
    });
    let answered = Arc::new(Mutex::new(HashSet::new()));
    let callers: Vec<_> = (0..4u64)
        .map(|caller| {
            let shared = shared.clone();
            let answered = answered.clone();
            tokio::spawn(async move {
                for n in 0..250u64 {
                    let request = caller * 1_000 + n;
                    let (_, echoed) = shared.clone().oneshot(request).await.unwrap();
                    assert_eq!(echoed, request);
                    assert!(answered.lock().unwrap().insert(request));
                }
            })
        })
        .collect();
    let all = futures_util::future::join_all(callers);
    let finished = tokio::time::timeout(Duration::from_secs(20), all).await;
    for caller in finished.expect("every call is answered") {
        caller.unwrap();
    }
    churn.await.unwrap();
    assert_eq!(answered.lock().unwrap().len(), 1_000);
}

/// A shared balancer with no instance yet, whose calls wait up to `wait` for one.
fn waiting_for_an_instance(
    wait: Duration,
) -> (
    SharedBalancer<Balancer>,
    support::DiscoverHandle<usize, support::TestEndpoint>,
) {
    let (discover, handle) = discover();
    let balancer: Balancer = LoadBalancer::builder(discover)
        .wait_for_instance(wait)
        .build()
        .unwrap();
    (SharedBalancer::new(balancer), handle)
}

#[tokio::test(start_paused = true)]
async fn calls_waiting_for_an_instance_are_all_woken_when_one_appears() {
    let (shared, handle) = waiting_for_an_instance(Duration::from_secs(10));
    let mut first = tokio_test::task::spawn(shared.clone().oneshot(1));
    let mut second = tokio_test::task::spawn(shared.clone().oneshot(2));
    assert_pending!(first.poll());
    assert_pending!(second.poll());

    handle.insert(7, endpoint(7).0);
    assert!(first.is_woken() && second.is_woken());
    assert_eq!(assert_ready!(first.poll()).unwrap(), (7, 1));
    assert_eq!(assert_ready!(second.poll()).unwrap(), (7, 2));
}

#[tokio::test(start_paused = true)]
async fn a_dropped_waiting_call_does_not_stop_the_next_one() {
    let (shared, handle) = waiting_for_an_instance(Duration::from_secs(10));
    let mut dropped = tokio_test::task::spawn(shared.clone().oneshot(1));
    assert_pending!(dropped.poll());
    drop(dropped);

    let mut next = tokio_test::task::spawn(shared.clone().oneshot(2));
    assert_pending!(next.poll());
    handle.insert(3, endpoint(3).0);
    assert_eq!(assert_ready!(next.poll()).unwrap(), (3, 2));
}

#[tokio::test(start_paused = true)]
async fn a_call_waiting_for_an_instance_fails_once_the_wait_is_over() {
    let (shared, _handle) = waiting_for_an_instance(Duration::from_secs(1));
    let error = shared.oneshot(1).await.unwrap_err();
    assert!(support::is_no_healthy(&error), "{error}");
}

// ===== services with unusual readiness =====

/// Wakes its waker, then says it is not ready, until it has been polled `left`
/// times; counts its polls.
#[derive(Clone)]
struct Yielding {
    left: Arc<AtomicUsize>,
    polls: Arc<AtomicUsize>,
}

impl Service<u32> for Yielding {
    type Response = u32;
    type Error = BoxError;
    type Future = Ready<Result<u32, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        if self.left.load(Ordering::SeqCst) == 0 {
            return Poll::Ready(Ok(()));
        }
        self.left.fetch_sub(1, Ordering::SeqCst);
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn call(&mut self, request: u32) -> Self::Future {
        std::future::ready(Ok(request))
    }
}

#[tokio::test]
async fn a_balancer_that_wakes_itself_while_pending_is_tried_once_per_poll() {
    let polls = Arc::new(AtomicUsize::new(0));
    let service = Yielding {
        left: Arc::new(AtomicUsize::new(3)),
        polls: polls.clone(),
    };
    let mut call = tokio_test::task::spawn(SharedBalancer::new(service).oneshot(5));

    // `call` tried once; each poll then tries once more, never spinning.
    assert_pending!(call.poll());
    assert_eq!(polls.load(Ordering::SeqCst), 2);
    assert!(call.is_woken(), "the wake-up during the try is passed on");
    assert_pending!(call.poll());
    assert_eq!(polls.load(Ordering::SeqCst), 3);
    assert_eq!(assert_ready!(call.poll()).unwrap(), 5);
    assert_eq!(polls.load(Ordering::SeqCst), 4);
}

/// Panics in `call` for the request `0`.
struct PanicsOnZero;

impl Service<u32> for PanicsOnZero {
    type Response = u32;
    type Error = BoxError;
    type Future = Ready<Result<u32, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: u32) -> Self::Future {
        assert_ne!(request, 0, "the test's panic");
        std::future::ready(Ok(request))
    }
}

#[tokio::test]
async fn after_a_panic_under_the_lock_every_call_fails_with_a_typed_error() {
    let shared = SharedBalancer::new(PanicsOnZero);
    assert_eq!(shared.clone().oneshot(1).await.unwrap(), 1);
    let mut panicking = shared.clone();
    let panicked = std::panic::catch_unwind(AssertUnwindSafe(|| panicking.call(0)));
    assert!(panicked.is_err());

    let error = shared.clone().oneshot(1).await.unwrap_err();
    assert!(error.is::<BalancerPanickedError>(), "{error}");
    assert!(shared.with(|_| ()).is_none());
}

/// Fails `poll_ready` with an error.
struct Broken;

impl Service<u32> for Broken {
    type Response = u32;
    type Error = BoxError;
    type Future = Ready<Result<u32, BoxError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Err("discovery failed".into()))
    }

    fn call(&mut self, request: u32) -> Self::Future {
        std::future::ready(Ok(request))
    }
}

#[tokio::test]
async fn a_readiness_error_fails_the_call_with_that_error() {
    let error = SharedBalancer::new(Broken).oneshot(1).await.unwrap_err();
    assert_eq!(error.to_string(), "discovery failed");
}

#[tokio::test]
async fn with_reads_the_shared_balancer() {
    let (discover, handle) = discover();
    handle.insert(1, endpoint(1).0);
    let balancer: Balancer = LoadBalancer::new(discover);
    let shared = SharedBalancer::new(balancer);
    assert_eq!(
        shared.with(|balancer| balancer.len()),
        Some(0),
        "not polled yet"
    );
    shared.clone().oneshot(4).await.unwrap();
    assert_eq!(shared.with(|balancer| balancer.len()), Some(1));
}
