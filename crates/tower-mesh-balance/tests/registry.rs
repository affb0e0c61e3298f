//! The origin's selection API, on its own and as a discovery source.

use std::collections::HashMap;

use std::task::{Context, Poll};

use tower::{Service, ServiceExt};
use tower_mesh_balance::{
    InstanceKey, LoadBalancer, LoadBalancerStrategy, NoHealthyInstanceError, RegistryDiscover,
    ServiceInstance, ServiceRegistry,
};

fn registry(strategy: LoadBalancerStrategy, ids: &[&str]) -> ServiceRegistry {
    let registry = ServiceRegistry::with_seed(strategy, 3);
    for (port, id) in ids.iter().enumerate() {
        registry
            .register(ServiceInstance::new(*id, "10.0.0.1", 8000 + port as u16))
            .unwrap();
    }
    registry
}

fn ids(registry: &ServiceRegistry, count: usize) -> Vec<String> {
    (0..count)
        .map(|_| registry.get_instance().unwrap().id.clone())
        .collect()
}

#[test]
fn round_robin_starts_with_the_first_registered_instance() {
    let registry = registry(LoadBalancerStrategy::RoundRobin, &["a", "b", "c"]);
    assert_eq!(ids(&registry, 4), ["a", "b", "c", "a"]);
}

#[test]
fn round_robin_skips_an_unhealthy_instance_without_reshuffling() {
    let registry = registry(LoadBalancerStrategy::RoundRobin, &["a", "b", "c"]);
    assert_eq!(ids(&registry, 1), ["a"]);
    assert!(registry.mark_healthy("b", false));
    assert_eq!(ids(&registry, 3), ["c", "a", "c"]);
    registry.mark_healthy("b", true);
    assert_eq!(ids(&registry, 3), ["a", "b", "c"]);
}

#[test]
fn weighted_picks_follow_the_weights_exactly() {
    let registry = ServiceRegistry::new(LoadBalancerStrategy::Weighted);
    registry
        .register(ServiceInstance::new("heavy", "h", 1).with_weight(3))
        .unwrap();
    registry
        .register(ServiceInstance::new("light", "l", 1))
        .unwrap();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for id in ids(&registry, 400) {
        *counts.entry(id).or_default() += 1;
    }
    assert_eq!((counts["heavy"], counts["light"]), (300, 100));
}

#[test]
fn consistent_hash_gives_a_key_the_same_instance() {
    let registry = registry(LoadBalancerStrategy::ConsistentHash, &["a", "b", "c", "d"]);
    for user in 0..100 {
        let first = registry.get_instance_for(&user).unwrap();
        assert_eq!(registry.get_instance_for(&user).unwrap().id, first.id);
    }
}

#[test]
fn no_healthy_instance_is_an_error_not_a_panic() {
    let registry = registry(LoadBalancerStrategy::Random, &["a"]);
    registry.mark_healthy("a", false);
    let error = registry.get_instance().unwrap_err();
    assert_eq!(error.known_instances(), 1);
    assert_eq!(error.to_string(), "none of 1 known instances is healthy");
    registry.deregister("a");
    let empty: NoHealthyInstanceError = registry.get_instance().unwrap_err();
    assert_eq!(empty.to_string(), "no instance is known");
}

#[test]
fn registering_an_invalid_instance_names_the_field() {
    let registry = ServiceRegistry::new(LoadBalancerStrategy::RoundRobin);
    let zero = ServiceInstance::new("a", "h", 1).with_weight(0);
    assert_eq!(registry.register(zero).unwrap_err().field(), "weight");
    let nameless = ServiceInstance::new("", "h", 1);
    assert_eq!(registry.register(nameless).unwrap_err().field(), "id");
    assert!(registry.instances().is_empty());
}

#[test]
fn registering_an_id_again_replaces_the_instance_in_place() {
    let registry = registry(LoadBalancerStrategy::RoundRobin, &["a", "b"]);
    registry
        .register(ServiceInstance::new("a", "10.9.9.9", 1))
        .unwrap();
    let instances = registry.instances();
    assert_eq!(instances.len(), 2);
    assert_eq!(instances[0].0.address(), "10.9.9.9:1");
    assert_eq!(registry.deregister("missing"), None);
    assert!(!registry.mark_healthy("missing", false));
}

#[test]
fn instances_stay_in_registration_order_after_deregistrations() {
    let ids = ["a", "b", "c", "d", "e"];
    let registry = registry(LoadBalancerStrategy::RoundRobin, &ids);
    assert!(registry.deregister("b").is_some());
    assert!(registry.deregister("a").is_some());
    registry
        .register(ServiceInstance::new("f", "10.0.0.9", 9))
        .unwrap();
    let listed: Vec<String> = registry
        .instances()
        .into_iter()
        .map(|(instance, _)| instance.id)
        .collect();
    assert_eq!(listed, ["c", "d", "e", "f"]);
}

#[test]
fn every_remaining_instance_is_picked_after_many_deregistrations() {
    let ids: Vec<String> = (0..200).map(|n| format!("i{n}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let registry = registry(LoadBalancerStrategy::RoundRobin, &refs);
    for id in ids.iter().step_by(3) {
        assert!(registry.deregister(id).is_some(), "{id} was registered");
    }
    let remaining: std::collections::HashSet<String> = ids
        .iter()
        .skip(1)
        .step_by(3)
        .chain(ids.iter().skip(2).step_by(3))
        .cloned()
        .collect();
    let picked: std::collections::HashSet<String> = (0..remaining.len())
        .map(|_| registry.get_instance().unwrap().id.clone())
        .collect();
    assert_eq!(picked, remaining, "one round robin cycle visits each once");
    for id in &remaining {
        assert!(
            registry.deregister(id).is_some(),
            "{id} is still registered"
        );
    }
    assert!(registry.instances().is_empty());
}

// ===== as a discovery source =====

/// An endpoint answering with its instance's id.
#[derive(Clone)]
struct Named(String);

impl Service<()> for Named {
    type Response = String;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<String, std::io::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: ()) -> Self::Future {
        std::future::ready(Ok(self.0.clone()))
    }
}

fn named(instance: &ServiceInstance) -> Named {
    Named(instance.id.clone())
}

type Balancer = LoadBalancer<RegistryDiscover<fn(&ServiceInstance) -> Named>, ()>;

fn balancer(registry: &ServiceRegistry) -> Balancer {
    let make: fn(&ServiceInstance) -> Named = named;
    LoadBalancer::builder(registry.discover(make))
        .weight_by(InstanceKey::weight)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn instances_registered_at_run_time_reach_the_balancer() {
    let registry = registry(LoadBalancerStrategy::RoundRobin, &["a"]);
    let mut balancer = balancer(&registry);
    assert_eq!(balancer.ready().await.unwrap().call(()).await.unwrap(), "a");

    registry
        .register(ServiceInstance::new("b", "10.0.0.2", 80))
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(balancer.ready().await.unwrap().call(()).await.unwrap());
    }
    assert_eq!(seen, ["b", "a", "b", "a"]);
}

#[tokio::test(start_paused = true)]
async fn deregistered_and_unhealthy_instances_leave_the_balancer() {
    let registry = registry(LoadBalancerStrategy::RoundRobin, &["a", "b", "c"]);
    let mut balancer = balancer(&registry);
    balancer.ready().await.unwrap();
    assert_eq!(balancer.len(), 3);

    registry.deregister("a");
    registry.mark_healthy("b", false);
    for _ in 0..3 {
        assert_eq!(balancer.ready().await.unwrap().call(()).await.unwrap(), "c");
    }
    assert_eq!(balancer.len(), 1);

    registry.mark_healthy("b", true);
    balancer.ready().await.unwrap();
    assert_eq!(balancer.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_stream_ends_when_the_registry_is_dropped_and_the_balancer_keeps_its_endpoints() {
    let registry = registry(LoadBalancerStrategy::RoundRobin, &["a", "b"]);
    let mut balancer = balancer(&registry);
    balancer.ready().await.unwrap();
    drop(registry);
    for expected in ["a", "b", "a"] {
        assert_eq!(
            balancer.ready().await.unwrap().call(()).await.unwrap(),
            expected
        );
    }
}
