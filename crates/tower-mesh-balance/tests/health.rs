//! Instance health: outlier ejection, probes, limits, active checks, readiness
//! failures and manual marks, all on tokio's paused clock.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::{call, endpoints, is_no_healthy, picks, poll_once, Balancer, Control};
use tokio::time::advance;
use tower_mesh_balance::{
    ActiveHealthCheck, CheckFuture, HealthCheck, LoadBalancer, LoadBalancerStrategy,
    TcpConnectCheck,
};
use tower_mesh_breaker::{CircuitBreakerConfig, CircuitState};

fn outliers(failures: u32, open: Duration) -> CircuitBreakerConfig {
    CircuitBreakerConfig::builder()
        .failure_threshold(failures)
        .open_duration(open)
        .open_duration_growth(2.0, Duration::from_secs(600))
        .half_open_max_calls(1)
        .success_threshold(1)
        .build()
        .unwrap()
}

fn with_outliers(n: usize, max_ejection: u32, panic: u32) -> (Balancer, Vec<Arc<Control>>) {
    let (discover, _handle, controls) = endpoints(n);
    let balancer = LoadBalancer::builder(discover)
        .outlier_detection(outliers(3, Duration::from_secs(10)))
        .max_ejection_percent(max_ejection)
        .panic_threshold(panic)
        .build()
        .unwrap();
    (balancer, controls)
}

/// Sends `count` calls, ignoring their results, and returns who answered.
async fn send(balancer: &mut Balancer, count: u64) -> Vec<Option<usize>> {
    let mut answered = Vec::new();
    for request in 0..count {
        answered.push(call(balancer, request).await.ok());
    }
    answered
}

// ===== outlier detection =====

#[tokio::test(start_paused = true)]
async fn an_endpoint_is_ejected_after_consecutive_failures() {
    let (mut balancer, controls) = with_outliers(3, 100, 0);
    controls[1].set_failing(true);
    // Round robin: endpoint 1 fails on its 3rd turn, in the 8th call.
    send(&mut balancer, 8).await;
    assert!(poll_once(&mut balancer).is_ready());
    let status = balancer.status(&1).unwrap();
    assert!(status.ejected && !status.healthy);
    assert_eq!(status.breaker, Some(CircuitState::Open));

    let calls_before = controls[1].calls();
    let answered: HashSet<_> = picks(&mut balancer, 100, 30).await.into_iter().collect();
    assert_eq!(answered, HashSet::from([0, 2]));
    assert_eq!(controls[1].calls(), calls_before);
}

#[tokio::test(start_paused = true)]
async fn an_ejection_grows_while_probes_keep_failing() {
    let (mut balancer, controls) = with_outliers(2, 100, 0);
    controls[0].set_failing(true);
    send(&mut balancer, 6).await;
    assert!(poll_once(&mut balancer).is_ready());
    assert!(balancer.status(&0).unwrap().ejected);

    // First ejection: 10 s, then one probe, which fails.
    advance(Duration::from_millis(9_999)).await;
    assert!(poll_once(&mut balancer).is_ready());
    assert!(balancer.status(&0).unwrap().ejected);
    advance(Duration::from_millis(1)).await;
    assert!(poll_once(&mut balancer).is_ready());
    assert!(!balancer.status(&0).unwrap().ejected, "probing after 10 s");
    let probes = controls[0].calls();
    send(&mut balancer, 2).await;
    assert_eq!(controls[0].calls(), probes + 1, "exactly one probe");
    assert!(poll_once(&mut balancer).is_ready());
    assert!(balancer.status(&0).unwrap().ejected);

    // Second ejection: twice as long.
    advance(Duration::from_millis(19_999)).await;
    assert!(poll_once(&mut balancer).is_ready());
    assert!(
        balancer.status(&0).unwrap().ejected,
        "still ejected before 20 s"
    );
    advance(Duration::from_millis(1)).await;
    assert!(poll_once(&mut balancer).is_ready());
    assert!(!balancer.status(&0).unwrap().ejected);
}

#[tokio::test(start_paused = true)]
async fn an_ejected_endpoint_returns_once_a_probe_succeeds() {
    let (mut balancer, controls) = with_outliers(2, 100, 0);
    controls[0].set_failing(true);
    send(&mut balancer, 6).await;
    assert!(poll_once(&mut balancer).is_ready());
    assert!(balancer.status(&0).unwrap().ejected);

    controls[0].set_failing(false);
    advance(Duration::from_secs(10)).await;
    send(&mut balancer, 2).await;
    assert!(poll_once(&mut balancer).is_ready());
    let status = balancer.status(&0).unwrap();
    assert!(status.healthy);
    assert_eq!(status.breaker, Some(CircuitState::Closed));
    let answered: HashSet<_> = picks(&mut balancer, 10, 4).await.into_iter().collect();
    assert_eq!(answered, HashSet::from([0, 1]));
}

#[tokio::test(start_paused = true)]
async fn no_more_than_the_maximum_ejection_percentage_is_ejected() {
    let (mut balancer, controls) = with_outliers(4, 50, 0);
    for control in &controls {
        control.set_failing(true);
    }
    for _ in 0..5 {
        send(&mut balancer, 12).await;
    }
    assert!(poll_once(&mut balancer).is_ready());
    let ejected = (0..4)
        .filter(|key| balancer.status(key).unwrap().ejected)
        .count();
    assert_eq!(ejected, 2);
}

#[tokio::test(start_paused = true)]
async fn below_the_panic_threshold_calls_spread_over_every_endpoint() {
    let (mut balancer, controls) = with_outliers(4, 100, 50);
    for control in &controls[..3] {
        control.set_failing(true);
    }
    // Eject endpoints 0 and 1 (half the set: not yet panicking).
    send(&mut balancer, 12).await;
    assert!(poll_once(&mut balancer).is_ready());
    assert!(balancer.is_panicking(), "one of four healthy is under 50%");

    let before: Vec<usize> = controls.iter().map(|c| c.calls()).collect();
    send(&mut balancer, 8).await;
    for (control, before) in controls.iter().zip(before) {
        assert_eq!(control.calls(), before + 2, "endpoint {}", control.id);
    }
}

#[tokio::test(start_paused = true)]
async fn without_a_panic_threshold_only_healthy_endpoints_are_used() {
    let (mut balancer, controls) = with_outliers(4, 100, 0);
    for control in &controls[..3] {
        control.set_failing(true);
    }
    send(&mut balancer, 12).await;
    assert!(poll_once(&mut balancer).is_ready());
    assert!(!balancer.is_panicking());
    assert_eq!(picks(&mut balancer, 0, 8).await, [3; 8]);
}

// ===== readiness failures =====

#[tokio::test(start_paused = true)]
async fn an_endpoint_failing_readiness_is_taken_out_and_probed_again() {
    let (discover, _handle, controls) = endpoints(2);
    let mut balancer: Balancer = LoadBalancer::builder(discover)
        .readiness_retry(Duration::from_secs(1), Duration::from_secs(8))
        .build()
        .unwrap();
    assert_eq!(picks(&mut balancer, 0, 2).await, [0, 1]);

    // Endpoint 0 is ready; after its next call, its poll_ready fails and it leaves
    // the rotation, not the set.
    controls[0].fail_readiness_once();
    assert_eq!(picks(&mut balancer, 2, 3).await, [0, 1, 1]);
    let status = balancer.status(&0).unwrap();
    assert!(status.not_ready && !status.healthy);
    assert_eq!(balancer.len(), 2);

    advance(Duration::from_secs(1)).await;
    assert_eq!(picks(&mut balancer, 5, 2).await, [0, 1]);
    assert!(balancer.status(&0).unwrap().healthy);
}

// ===== manual marks =====

#[tokio::test(start_paused = true)]
async fn an_endpoint_marked_unhealthy_takes_no_calls_even_when_panicking() {
    let (discover, _handle, _) = endpoints(2);
    let mut balancer: Balancer = LoadBalancer::builder(discover)
        .panic_threshold(100)
        .build()
        .unwrap();
    let health = balancer.health_control();
    health.mark_healthy(0, false);
    assert_eq!(picks(&mut balancer, 0, 4).await, [1; 4]);
    health.mark_healthy(1, false);
    let error = call(&mut balancer, 9).await.unwrap_err();
    assert!(is_no_healthy(&error));
}

// ===== active checks =====

/// Passes every endpoint whose flag is up.
#[derive(Clone)]
struct Flags(Arc<Vec<AtomicBool>>);

impl HealthCheck<usize> for Flags {
    fn check(&self, key: &usize) -> CheckFuture {
        let passed = self.0[*key].load(Ordering::SeqCst);
        Box::pin(async move { passed })
    }
}

async fn next_round(balancer: &mut Balancer) {
    advance(Duration::from_secs(1)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(poll_once(balancer).is_ready());
}

#[tokio::test(start_paused = true)]
async fn active_checks_take_an_endpoint_out_and_back_at_their_thresholds() {
    let (discover, _handle, _) = endpoints(2);
    let flags = Flags(Arc::new(vec![AtomicBool::new(true), AtomicBool::new(true)]));
    let config = ActiveHealthCheck::builder()
        .interval(Duration::from_secs(1))
        .unhealthy_threshold(3)
        .healthy_threshold(2)
        .build()
        .unwrap();
    let mut balancer: Balancer = LoadBalancer::builder(discover)
        .active_health_check(flags.clone(), config)
        .build()
        .unwrap();
    assert!(poll_once(&mut balancer).is_ready());
    flags.0[1].store(false, Ordering::SeqCst);

    // Rounds run at 0 s, 1 s, 2 s...: two failures are not enough, three are.
    next_round(&mut balancer).await;
    next_round(&mut balancer).await;
    assert!(balancer.status(&1).unwrap().healthy);
    next_round(&mut balancer).await;
    assert!(balancer.status(&1).unwrap().failing_checks);
    assert_eq!(picks(&mut balancer, 0, 3).await, [0, 0, 0]);

    flags.0[1].store(true, Ordering::SeqCst);
    next_round(&mut balancer).await;
    assert!(
        !balancer.status(&1).unwrap().healthy,
        "one pass is not enough"
    );
    next_round(&mut balancer).await;
    assert!(balancer.status(&1).unwrap().healthy);
}

#[tokio::test]
async fn the_tcp_check_passes_while_a_listener_accepts_and_fails_once_it_is_gone() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    assert!(TcpConnectCheck.check(&address).await);
    assert!(TcpConnectCheck.check(&address.to_string()).await);

    drop(listener);
    assert!(!TcpConnectCheck.check(&address).await);
}

#[tokio::test]
async fn the_tcp_check_takes_an_instance_with_nothing_listening_out_of_rotation() {
    use tower::{service_fn, ServiceExt};
    use tower_mesh_balance::{InstanceKey, ServiceInstance, ServiceRegistry};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let live = listener.local_addr().unwrap().port();
    let gone = {
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        closed.local_addr().unwrap().port()
    };
    let registry = ServiceRegistry::new(LoadBalancerStrategy::RoundRobin);
    registry
        .register(ServiceInstance::new("live", "127.0.0.1", live))
        .unwrap();
    registry
        .register(ServiceInstance::new("gone", "127.0.0.1", gone))
        .unwrap();
    let discover = registry.discover(|instance: &ServiceInstance| {
        let id = instance.id.clone();
        service_fn(move |_: ()| {
            let id = id.clone();
            async move { Ok::<_, std::io::Error>(id) }
        })
    });
    let config = ActiveHealthCheck::builder()
        .interval(Duration::from_millis(10))
        .unhealthy_threshold(1)
        .build()
        .unwrap();
    let mut balancer = LoadBalancer::builder(discover)
        .active_health_check(TcpConnectCheck, config)
        .build()
        .unwrap();

    let gone_key = balancer
        .ready()
        .await
        .unwrap()
        .keys()
        .find(|k: &&InstanceKey| k.id() == "gone")
        .cloned()
        .unwrap();
    // Wait, on the real clock, for the first round of checks to land.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while balancer.status(&gone_key).unwrap().healthy {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the check never failed"
        );
        tokio::task::yield_now().await;
        balancer.ready().await.unwrap();
    }
    for _ in 0..3 {
        let answer = tower::Service::call(balancer.ready().await.unwrap(), ())
            .await
            .unwrap();
        assert_eq!(answer, "live");
    }
    drop(listener);
}
