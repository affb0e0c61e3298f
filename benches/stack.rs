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
//! ratio; `stack_ratio.rs` measures it with the rows in alternation.
//!
//! Run with `cargo bench -p tower-mesh-benches --bench stack`.

// criterion's macros generate an undocumented public function.
#![allow(missing_docs)]

mod stack_support;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tokio::runtime::Runtime;
use tower::ServiceExt;

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

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(20);
    targets = throughput
}
criterion_main!(benches);
