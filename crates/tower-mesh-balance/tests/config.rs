//! Every invalid setting is a `ConfigError` naming its field.

mod support;

use std::time::Duration;

use support::{endpoints, Balancer};
use tower_mesh_balance::{ActiveHealthCheck, LoadBalancer, LoadBalancerStrategy};

fn rejected(
    configure: impl FnOnce(
        tower_mesh_balance::LoadBalancerBuilder<
            support::TestDiscover<usize, support::TestEndpoint>,
            u64,
        >,
    ) -> tower_mesh_balance::LoadBalancerBuilder<
        support::TestDiscover<usize, support::TestEndpoint>,
        u64,
    >,
) -> &'static str {
    let (discover, _handle, _) = endpoints(1);
    let result: Result<Balancer, _> = configure(LoadBalancer::builder(discover)).build();
    result.expect_err("the builder rejects it").field()
}

#[test]
fn out_of_range_percentages_are_rejected() {
    assert_eq!(
        rejected(|b| b.max_ejection_percent(101)),
        "max_ejection_percent"
    );
    assert_eq!(rejected(|b| b.panic_threshold(250)), "panic_threshold");
}

#[test]
fn consistent_hashing_without_a_key_is_rejected() {
    let field = rejected(|b| b.strategy(LoadBalancerStrategy::ConsistentHash));
    assert_eq!(field, "hash_key");
}

#[test]
fn zero_durations_are_rejected() {
    assert_eq!(
        rejected(|b| b.wait_for_instance(Duration::ZERO)),
        "wait_for_instance"
    );
    let backwards = |b: tower_mesh_balance::LoadBalancerBuilder<_, _>| {
        b.readiness_retry(Duration::from_secs(5), Duration::from_secs(1))
    };
    assert_eq!(rejected(backwards), "readiness_retry");
    assert_eq!(
        rejected(|b| b.peak_ewma(Duration::ZERO, Duration::from_secs(1))),
        "peak_ewma"
    );
}

#[test]
fn valid_settings_build() {
    let (discover, _handle, _) = endpoints(1);
    let built: Result<Balancer, _> = LoadBalancer::builder(discover)
        .max_ejection_percent(100)
        .panic_threshold(0)
        .wait_for_instance(Duration::from_millis(1))
        .build();
    assert!(built.is_ok());
}

#[test]
fn active_check_settings_are_validated() {
    let field = |builder: tower_mesh_balance::ActiveHealthCheckBuilder| {
        builder.build().unwrap_err().field()
    };
    assert_eq!(
        field(ActiveHealthCheck::builder().interval(Duration::ZERO)),
        "interval"
    );
    assert_eq!(
        field(ActiveHealthCheck::builder().timeout(Duration::ZERO)),
        "timeout"
    );
    assert_eq!(
        field(ActiveHealthCheck::builder().healthy_threshold(0)),
        "healthy_threshold"
    );
    assert_eq!(
        field(ActiveHealthCheck::builder().unhealthy_threshold(0)),
        "unhealthy_threshold"
    );
    let defaults = ActiveHealthCheck::builder().build().unwrap();
    assert_eq!(defaults.unhealthy_threshold(), 3);
}
