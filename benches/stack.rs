//! Throughput of the whole stack over hyper on loopback, beside a bare client.
//!
//! Three hyper servers answer `ok` on loopback. Each criterion iteration sends one
//! wave of `CONCURRENCY` requests at once and waits for every answer, through:
//!
//! - `bare hyper-util`: hyper-util's pooled client, round robin over the three
//!   servers by hand;
//! - `tower-mesh stack`: a `ServiceProxy` over the same client as balancer
//!   endpoints: overall and per-attempt timeouts, retry (with a budget), a
//!   service-wide circuit breaker, and a shared round-robin balancer with
//!   per-instance outlier detection;
//! - `tower-mesh layers, no timeouts`: the same layers composed by hand.
//!
//! Every row shares the machine with the servers, so the figure to read is the
//! ratio; `stack_ratio.rs` measures it with the rows in alternation. A second
//! group, `stack per call, in memory`, measures the stack's own cost per call
//! against an endpoint that answers at once, with no network.
//!
//! Run with `cargo bench -p tower-mesh-benches --bench stack`.

// criterion's macros generate an undocumented public function.
#![allow(missing_docs)]

mod stack_support;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tokio::runtime::Runtime;
use tower::balance::p2c::Balance;
use tower::discover::ServiceList;
use tower::load::Constant;
use tower::{service_fn, BoxError, Service, ServiceBuilder, ServiceExt};
use tower_mesh::prelude::*;

use stack_support::{request, servers, waves, Bare, CONCURRENCY};

fn throughput(c: &mut Criterion) {
    let runtime = Runtime::new().expect("a multi-threaded runtime");
    let addrs = runtime.block_on(servers(3));
    let bare = Bare::new(&addrs);
    let (mesh, _registry) = runtime
        .block_on(async { stack_support::proxy(&addrs) })
        .expect("a valid proxy");

    let mut group = c.benchmark_group("stack over loopback");
    group.throughput(Throughput::Elements(CONCURRENCY as u64));
    group.bench_function(BenchmarkId::from_parameter("bare hyper-util"), |b| {
        b.to_async(&runtime).iter_custom(|iters| {
            let bare = bare.clone();
            async move {
                waves(iters, move || {
                    let bare = bare.clone();
                    async move { bare.send().await }
                })
                .await
            }
        })
    });
    group.bench_function(BenchmarkId::from_parameter("tower-mesh stack"), |b| {
        b.to_async(&runtime).iter_custom(|iters| {
            let mesh = mesh.clone();
            async move { waves(iters, move || mesh.call(request())).await }
        })
    });
    let (layered, _layered_registry) = runtime.block_on(async { stack_support::layers(&addrs) });
    group.bench_function(
        BenchmarkId::from_parameter("tower-mesh layers, no timeouts"),
        |b| {
            b.to_async(&runtime).iter_custom(|iters| {
                let layered = layered.clone();
                async move { waves(iters, move || layered.clone().oneshot(request())).await }
            })
        },
    );
    group.finish();
}

/// The stack's own cost per call, without a network: one call at a time on a
/// current-thread runtime, to an endpoint that answers at once, bare and through
/// a `ServiceProxy` over three such endpoints (timeouts, retry with a budget, the
/// service-wide breaker, the shared balancer with outlier detection), and
/// through tower's own timeouts, buffer and p2c balancer.
fn per_call(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime");
    let answer = || service_fn(|n: u64| async move { Ok::<_, BoxError>(n) });
    let registry = ServiceRegistry::new(LoadBalancerStrategy::RoundRobin);
    for (index, port) in (8000..8003).enumerate() {
        let instance = ServiceInstance::new(format!("s{index}"), "127.0.0.1", port);
        registry.register(instance).expect("a valid instance");
    }
    let proxy = ServiceProxy::builder("in-memory")
        .timeout(Duration::from_secs(5))
        .attempt_timeout(Duration::from_secs(1))
        .build(registry.discover(move |_: &ServiceInstance| answer()))
        .expect("a valid proxy");

    let mut group = c.benchmark_group("stack per call, in memory");
    group.bench_function(BenchmarkId::from_parameter("bare service"), |b| {
        let mut bare = answer();
        b.to_async(&runtime).iter(|| {
            let call = bare.call(1);
            async move { call.await.expect("an answer") }
        })
    });
    group.bench_function(BenchmarkId::from_parameter("ServiceProxy"), |b| {
        b.to_async(&runtime)
            .iter(|| async { proxy.call(1).await.expect("an answer") })
    });
    // tower's own pieces of the same shape, without retry or breaker: two
    // timeouts, a buffer, and p2c over three endpoints of constant load.
    let endpoints: Vec<_> = (0..3).map(|_| Constant::new(answer(), 1usize)).collect();
    let tower_stack = {
        let _runtime = runtime.enter();
        ServiceBuilder::new()
            .timeout(Duration::from_secs(5))
            .buffer(1_024)
            .timeout(Duration::from_secs(1))
            .service(Balance::<_, u64>::new(ServiceList::new(endpoints)))
    };
    group.bench_function(
        BenchmarkId::from_parameter("tower: timeouts, buffer, p2c"),
        |b| {
            b.to_async(&runtime)
                .iter(|| async { tower_stack.clone().oneshot(1u64).await.expect("an answer") })
        },
    );
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(20);
    targets = throughput, per_call
}
criterion_main!(benches);
