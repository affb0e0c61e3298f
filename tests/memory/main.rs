//! Memory under churn: instances registered and removed many thousands of times
//! through a `ServiceRegistry` and a `LoadBalancer` with outlier detection, and a
//! million calls through circuit breakers made and dropped per instance. Resident
//! memory (`VmRSS`, Linux only) must stop growing after a warm-up round; each test
//! also prints what one instance and one breaker cost, from the growth of resident
//! memory while many of them are alive.
//!
//! The default run is 50,000 registrations and 1,000,000 breaker calls; scale
//! both with `TOWER_MESH_MEMORY_ROUNDS` (default 50 for instances, a fifth of it
//! for breakers):
//!
//! ```text
//! TOWER_MESH_MEMORY_ROUNDS=500 cargo test -p tower-mesh-tests --test memory -- --nocapture
//! ```
//!
//! The binary has its own `main` (no test harness): the checks run one after the
//! other, costs first while the heap is fresh, so no two measure resident memory
//! at once and no memory freed by one is counted as reused by the next.

use tower::{service_fn, BoxError, Layer, Service, ServiceExt};
use tower_mesh_balance::{LoadBalancer, LoadBalancerStrategy, ServiceInstance, ServiceRegistry};
use tower_mesh_breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer};

/// Instances registered, then removed, in one round.
const INSTANCES_PER_ROUND: usize = 1_000;
/// Breakers made and dropped in one round, and calls through each.
const BREAKERS_PER_ROUND: usize = 1_000;
const CALLS_PER_BREAKER: u64 = 20;
/// Rounds before the baseline is read.
const WARM_UP_ROUNDS: usize = 3;
/// Growth allowed after the warm-up: allocator slack, not a leak. A leak of 100
/// bytes per instance over the default run would be 4.7 MB.
const SLACK: u64 = 3 << 20;
/// How many live instances and breakers the cost of one is measured over.
const MEASURED_INSTANCES: usize = 5_000;
const MEASURED_BREAKERS: usize = 20_000;

/// The process's resident set, in bytes, from `/proc/self/status`.
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .expect("a VmRSS line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .expect("VmRSS in kB");
    kib * 1_024
}

fn rounds() -> usize {
    std::env::var("TOWER_MESH_MEMORY_ROUNDS")
        .ok()
        .map(|value| value.parse().expect("TOWER_MESH_MEMORY_ROUNDS is a number"))
        .unwrap_or(50)
        .max(WARM_UP_ROUNDS + 1)
}

fn assert_flat(what: &str, after_warm_up: u64, after: u64) {
    let grown = after.saturating_sub(after_warm_up);
    println!("{what}: resident {after_warm_up} B after the warm-up, {after} B at the end");
    assert!(
        grown <= SLACK,
        "{what}: resident memory grew by {grown} B after the warm-up"
    );
}

// ===== instances =====

type Echo = tower::util::ServiceFn<fn(u32) -> std::future::Ready<Result<u32, BoxError>>>;
type Balancer =
    LoadBalancer<tower_mesh_balance::RegistryDiscover<fn(&ServiceInstance) -> Echo>, u32>;

fn echo(n: u32) -> std::future::Ready<Result<u32, BoxError>> {
    std::future::ready(Ok(n))
}

fn make_echo(_: &ServiceInstance) -> Echo {
    service_fn(echo as fn(u32) -> std::future::Ready<Result<u32, BoxError>>)
}

/// A round-robin balancer with a breaker per instance over `registry`.
fn balancer(registry: &ServiceRegistry) -> Balancer {
    let discover = registry.discover(make_echo as fn(&ServiceInstance) -> Echo);
    LoadBalancer::builder(discover)
        .outlier_detection(CircuitBreakerConfig::default())
        .build()
        .unwrap()
}

fn instance_id(round: usize, index: usize) -> String {
    format!("instance-{round}-{index}")
}

async fn call(balancer: &mut Balancer, request: u32) {
    let answer = balancer.ready().await.unwrap().call(request).await.unwrap();
    assert_eq!(answer, request);
}

fn register(registry: &ServiceRegistry, round: usize, count: usize) {
    for index in 0..count {
        let port = 1_000 + index as u16 % 60_000;
        let instance = ServiceInstance::new(instance_id(round, index), "10.0.0.1", port);
        registry.register(instance).unwrap();
    }
}

fn deregister(registry: &ServiceRegistry, round: usize, count: usize) {
    for index in 0..count {
        assert!(registry.deregister(&instance_id(round, index)).is_some());
    }
}

/// Registers a batch, calls each instance once, removes the batch, and checks
/// the balancer let go of every removed endpoint.
async fn churn_round(registry: &ServiceRegistry, balancer: &mut Balancer, round: usize) {
    register(registry, round, INSTANCES_PER_ROUND);
    for request in 0..=INSTANCES_PER_ROUND as u32 {
        call(balancer, request).await;
    }
    assert_eq!(balancer.len(), INSTANCES_PER_ROUND + 1);
    deregister(registry, round, INSTANCES_PER_ROUND);
    call(balancer, 0).await;
    assert_eq!(balancer.len(), 1, "only the permanent instance is left");
}

fn permanent(registry: &ServiceRegistry) {
    registry
        .register(ServiceInstance::new("permanent", "10.0.0.2", 80))
        .unwrap();
}

async fn registering_and_removing_instances_many_times_leaves_resident_memory_flat() {
    let registry = ServiceRegistry::new(LoadBalancerStrategy::RoundRobin);
    permanent(&registry);
    let mut balancer = balancer(&registry);
    for round in 0..WARM_UP_ROUNDS {
        churn_round(&registry, &mut balancer, round).await;
    }
    let after_warm_up = resident_bytes();
    for round in WARM_UP_ROUNDS..rounds() {
        churn_round(&registry, &mut balancer, round).await;
    }
    let registered = rounds() * INSTANCES_PER_ROUND;
    println!("instances: {registered} registered and removed");
    assert_flat("instances", after_warm_up, resident_bytes());
}

async fn one_instance_costs_a_few_kilobytes_in_the_registry_and_balancer() -> Balancer {
    let registry = ServiceRegistry::new(LoadBalancerStrategy::RoundRobin);
    permanent(&registry);
    let mut balancer = balancer(&registry);
    churn_round(&registry, &mut balancer, 0).await;
    let before = resident_bytes();
    register(&registry, 1, MEASURED_INSTANCES);
    call(&mut balancer, 0).await;
    assert_eq!(balancer.len(), MEASURED_INSTANCES + 1);
    let per_instance = resident_bytes().saturating_sub(before) / MEASURED_INSTANCES as u64;
    println!("instances: {per_instance} B resident per registered, balanced instance");
    assert!(
        per_instance > 0 && per_instance < 16_384,
        "{per_instance} B per instance"
    );
    balancer
}

// ===== breakers =====

/// A no-op service that fails every seventh call, so breakers count failures.
fn no_op() -> impl Service<u64, Response = u64, Error = BoxError, Future: Send> + Clone {
    service_fn(|n: u64| async move {
        match n % 7 {
            6 => Err(BoxError::from("failed")),
            _ => Ok(n),
        }
    })
}

fn breaker(round: usize, index: usize) -> CircuitBreaker {
    CircuitBreaker::new(
        format!("breaker-{round}-{index}"),
        CircuitBreakerConfig::default(),
    )
}

/// Makes breakers, calls each, drops them; returns the calls made.
async fn breaker_round(round: usize) -> u64 {
    let mut calls = 0;
    for index in 0..BREAKERS_PER_ROUND {
        let mut service = CircuitBreakerLayer::new(breaker(round, index)).layer(no_op());
        for n in 0..CALLS_PER_BREAKER {
            let result = service.ready().await.unwrap().call(n).await;
            assert_eq!(result.is_ok(), n % 7 != 6);
            calls += 1;
        }
    }
    calls
}

async fn a_million_calls_through_breakers_made_and_dropped_leaves_resident_memory_flat() {
    let mut calls = 0;
    for round in 0..WARM_UP_ROUNDS {
        calls += breaker_round(round).await;
    }
    let after_warm_up = resident_bytes();
    let rounds = WARM_UP_ROUNDS.max(rounds() / 5 * 5);
    for round in WARM_UP_ROUNDS..rounds {
        calls += breaker_round(round).await;
    }
    println!(
        "breakers: {} made and dropped, {calls} calls",
        rounds * BREAKERS_PER_ROUND
    );
    assert_eq!(
        calls,
        rounds as u64 * BREAKERS_PER_ROUND as u64 * CALLS_PER_BREAKER
    );
    assert_flat("breakers", after_warm_up, resident_bytes());
}

fn one_breaker_costs_well_under_a_kilobyte_and_a_half() -> Vec<CircuitBreaker> {
    let before = resident_bytes();
    let breakers: Vec<CircuitBreaker> = (0..MEASURED_BREAKERS)
        .map(|index| breaker(0, index))
        .collect();
    let per_breaker = resident_bytes().saturating_sub(before) / MEASURED_BREAKERS as u64;
    println!("breakers: {per_breaker} B resident per breaker");
    assert!(breakers.iter().all(CircuitBreaker::can_execute));
    assert!(
        per_breaker > 0 && per_breaker < 1_536,
        "{per_breaker} B per breaker"
    );
    breakers
}

fn main() {
    if !cfg!(target_os = "linux") {
        println!("memory: skipped, resident memory is read from /proc on Linux only");
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // The costs first, on a fresh heap, each kept alive until both are measured.
    let breakers = one_breaker_costs_well_under_a_kilobyte_and_a_half();
    let instances = one_instance_costs_a_few_kilobytes_in_the_registry_and_balancer();
    let balancer = runtime.block_on(instances);
    drop((breakers, balancer));
    runtime.block_on(registering_and_removing_instances_many_times_leaves_resident_memory_flat());
    runtime
        .block_on(a_million_calls_through_breakers_made_and_dropped_leaves_resident_memory_flat());
    println!("memory: every check passed");
}
