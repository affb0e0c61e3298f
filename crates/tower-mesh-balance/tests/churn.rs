//! Endpoints inserted and removed while calls are in flight, discovery failures,
//! and the empty set.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;
use support::{call, discover, endpoint, endpoints, is_no_healthy, poll_once, Balancer, Mode};
use tower::{Service, ServiceExt};
use tower_mesh_balance::{DiscoveryFailure, LoadBalancer, NoHealthyInstanceError};

// ===== the empty set =====

#[tokio::test(start_paused = true)]
async fn an_empty_set_fails_calls_at_once() {
    let (discover, _handle) = discover();
    let mut balancer: Balancer = LoadBalancer::new(discover);
    let started = tokio::time::Instant::now();
    let error = call(&mut balancer, 1).await.unwrap_err();
    let none = error.downcast_ref::<NoHealthyInstanceError>().unwrap();
    assert_eq!(none.known_instances(), 0);
    assert_eq!(none.waited(), Duration::ZERO);
    assert_eq!(started.elapsed(), Duration::ZERO, "no timer was involved");
}

#[tokio::test]
async fn an_empty_set_fails_calls_fast_on_the_real_clock() {
    let (discover, _handle) = discover();
    let mut balancer: Balancer = LoadBalancer::new(discover);
    let started = tokio::time::Instant::now();
    for request in 0..1_000 {
        assert!(is_no_healthy(
            &call(&mut balancer, request).await.unwrap_err()
        ));
    }
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn with_a_wait_a_call_fails_only_after_the_wait() {
    let (discover, _handle) = discover();
    let mut balancer: Balancer = LoadBalancer::builder(discover)
        .wait_for_instance(Duration::from_secs(2))
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let error = call(&mut balancer, 1).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    let none = error.downcast_ref::<NoHealthyInstanceError>().unwrap();
    assert_eq!(none.waited(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn with_a_wait_a_call_is_served_by_an_instance_that_appears_in_time() {
    let (discover, handle) = discover();
    let mut balancer: Balancer = LoadBalancer::builder(discover)
        .wait_for_instance(Duration::from_secs(2))
        .build()
        .unwrap();
    let late = handle.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        late.insert(7, endpoint(7).0);
    });
    let started = tokio::time::Instant::now();
    assert_eq!(call(&mut balancer, 1).await.unwrap(), 7);
    assert_eq!(started.elapsed(), Duration::from_secs(1));
}

// ===== removal with calls in flight =====

#[tokio::test(start_paused = true)]
async fn a_call_in_flight_is_answered_after_its_endpoint_is_removed() {
    let (discover, handle, controls) = endpoints(2);
    let mut balancer: Balancer = LoadBalancer::new(discover);
    controls[0].set_mode(Mode::Hold);
    let in_flight = balancer.ready().await.unwrap().call(41);

    handle.remove(0);
    assert!(poll_once(&mut balancer).is_ready());
    assert_eq!(balancer.len(), 1);
    assert_eq!(call(&mut balancer, 42).await.unwrap(), 1);

    controls[0].release_all();
    assert_eq!(in_flight.await.unwrap(), (0, 41));
}

#[tokio::test(start_paused = true)]
async fn reinserting_a_key_replaces_its_endpoint() {
    let (discover, handle, _) = endpoints(1);
    let mut balancer: Balancer = LoadBalancer::new(discover);
    assert_eq!(call(&mut balancer, 1).await.unwrap(), 0);
    // Same key 0, new service answering as 9.
    handle.insert(0, endpoint(9).0);
    assert_eq!(call(&mut balancer, 2).await.unwrap(), 9);
    assert_eq!(balancer.len(), 1);
}

// ===== discovery failures =====

#[tokio::test(start_paused = true)]
async fn a_failing_discovery_keeps_the_last_known_endpoints_by_default() {
    let (discover, handle, _) = endpoints(2);
    let mut balancer: Balancer = LoadBalancer::new(discover);
    handle.fail("registry unreachable");
    assert_eq!(call(&mut balancer, 1).await.unwrap(), 0);
    // The stream is polled again and may recover.
    handle.insert(2, endpoint(2).0);
    assert_eq!(call(&mut balancer, 2).await.unwrap(), 1);
    assert_eq!(call(&mut balancer, 3).await.unwrap(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_ended_discovery_keeps_the_last_known_endpoints() {
    let (discover, handle, _) = endpoints(2);
    let mut balancer: Balancer = LoadBalancer::new(discover);
    handle.end();
    handle.insert(5, endpoint(5).0);
    let answered: Vec<usize> = support::picks(&mut balancer, 0, 4).await;
    assert_eq!(
        answered,
        [0, 1, 0, 1],
        "changes after the end are never read"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_discovery_fails_poll_ready_when_asked_to() {
    let (discover, handle, _) = endpoints(2);
    let mut balancer: Balancer = LoadBalancer::builder(discover)
        .on_discovery_failure(DiscoveryFailure::Fail)
        .build()
        .unwrap();
    assert_eq!(call(&mut balancer, 1).await.unwrap(), 0);
    handle.fail("registry unreachable");
    let error = balancer.ready().await.unwrap_err();
    assert_eq!(error.to_string(), "registry unreachable");
}

// ===== churn =====

/// Inserts and removes endpoints while calls are held, then releases everything:
/// every call is answered exactly once, by the endpoint it was sent to.
#[tokio::test(start_paused = true)]
async fn churn_with_calls_in_flight_loses_and_duplicates_nothing() {
    let (discover, handle) = discover();
    let mut balancer: Balancer = LoadBalancer::new(discover);
    let mut controls = Vec::new();
    let mut calls = Vec::new();
    let mut live: Vec<usize> = Vec::new();
    for round in 0..50usize {
        let (service, control) = endpoint(round);
        control.set_mode(Mode::Hold);
        handle.insert(round, service);
        controls.push(control);
        live.push(round);
        if round % 3 == 2 {
            handle.remove(live.remove(round % live.len()));
        }
        for request in 0..4 {
            let id = (round * 4 + request) as u64;
            calls.push((id, balancer.ready().await.unwrap().call(id)));
        }
    }
    for control in &controls {
        control.release_all();
    }
    let mut answered: HashMap<u64, usize> = HashMap::new();
    for (id, call) in calls {
        let (endpoint, echoed) = call.await.unwrap();
        assert_eq!(echoed, id);
        assert!(
            answered.insert(id, endpoint).is_none(),
            "{id} answered twice"
        );
    }
    assert_eq!(answered.len(), 200);
    let served: usize = controls.iter().map(|c| c.calls()).sum();
    assert_eq!(served, 200, "every call reached exactly one endpoint");
}

// ===== invariants under random churn =====

#[derive(Debug, Clone)]
enum Op {
    Insert(usize),
    Remove(usize),
    MarkDown(usize),
    MarkUp(usize),
    Call,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..6usize).prop_map(Op::Insert),
        (0..6usize).prop_map(Op::Remove),
        (0..6usize).prop_map(Op::MarkDown),
        (0..6usize).prop_map(Op::MarkUp),
        Just(Op::Call),
        Just(Op::Call),
    ]
}

/// Applies `ops` to a balancer and to a model of the set; every call must go to
/// an endpoint the model holds healthy, and fail only when it holds none.
async fn check_against_model(ops: Vec<Op>) {
    let (discover, handle) = discover();
    let mut balancer: Balancer = LoadBalancer::new(discover);
    let health = balancer.health_control();
    // Membership, and the keys marked down (marks outlive membership).
    let mut model: HashMap<usize, bool> = HashMap::new();
    let mut marked_down: std::collections::HashSet<usize> = Default::default();
    for (request, op) in ops.into_iter().enumerate() {
        match op {
            Op::Insert(key) => {
                handle.insert(key, endpoint(key).0);
                model.insert(key, !marked_down.contains(&key));
            }
            Op::Remove(key) => {
                handle.remove(key);
                model.remove(&key);
            }
            Op::MarkDown(key) | Op::MarkUp(key) => {
                let healthy = matches!(op, Op::MarkUp(_));
                health.mark_healthy(key, healthy);
                if healthy {
                    marked_down.remove(&key);
                } else {
                    marked_down.insert(key);
                }
                if let Some(flag) = model.get_mut(&key) {
                    *flag = healthy;
                }
            }
            Op::Call => match call(&mut balancer, request as u64).await {
                Ok(id) => assert_eq!(model.get(&id), Some(&true), "sent to {id}: {model:?}"),
                Err(error) => {
                    assert!(is_no_healthy(&error));
                    assert!(model.values().all(|healthy| !healthy), "{model:?}");
                }
            },
        }
    }
    assert!(poll_once(&mut balancer).is_ready());
    assert_eq!(balancer.len(), model.len());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn calls_only_reach_known_healthy_endpoints_under_random_churn(ops in prop::collection::vec(op(), 1..80)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        runtime.block_on(check_against_model(ops));
    }
}
