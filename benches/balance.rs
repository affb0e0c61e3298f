//! The cost of one balanced call, by strategy and set size, side by side with
//! tower's power-of-two-choices balancer; and the cost of discovery churn.
//!
//! Every row balances over no-op endpoints (`poll_ready` then `call`, polled by
//! hand) so that what is measured is the balancer alone:
//!
//! - `tower-mesh/<strategy>`: [`LoadBalancer`] with each built-in strategy;
//!   consistent hashing routes on the request, a different key on each call;
//! - `tower/p2c-peak-ewma`: tower 0.5's `balance::p2c::Balance` over
//!   `load::PeakEwmaDiscover`, the closest match to `PeakEwma`;
//! - `tower/p2c-constant`: the same balancer over `load::Constant`, its cheapest load.
//!
//! Each runs at 10, 1,000 and 10,000 endpoints. The `churn` group inserts 10,000
//! endpoints through the discovery stream, lets the balancer take them in, then
//! removes them all.
//!
//! Before measuring, each row's heap allocations per call are counted and printed.
//!
//! Run with `cargo bench -p tower-mesh-benches --bench balance`.

// criterion's macros generate an undocumented public function.
#![allow(missing_docs)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use futures_util::Stream;
use tower::balance::p2c::Balance;
use tower::discover::{Change, ServiceList};
use tower::load::{CompleteOnResponse, Constant, PeakEwmaDiscover};
use tower::Service;
use tower_mesh_balance::{LoadBalancer, LoadBalancerStrategy};
use tower_mesh_benches::{ready_and_call, CountingAllocator, Noop};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator::new();

const SIZES: [usize; 3] = [10, 1_000, 10_000];
const CHURN: usize = 10_000;

const STRATEGIES: [LoadBalancerStrategy; 6] = [
    LoadBalancerStrategy::RoundRobin,
    LoadBalancerStrategy::Random,
    LoadBalancerStrategy::Weighted,
    LoadBalancerStrategy::LeastConnections,
    LoadBalancerStrategy::PeakEwma,
    LoadBalancerStrategy::ConsistentHash,
];

// ===== the rows =====

fn mesh(strategy: LoadBalancerStrategy, size: usize) -> impl Service<u64> {
    LoadBalancer::builder(ServiceList::new(vec![Noop; size]))
        .strategy(strategy)
        .hash_key(|request: &u64| *request)
        .seed(1)
        .build()
        .expect("a valid balancer")
}

fn tower_peak_ewma(size: usize) -> impl Service<u64> {
    let endpoints = ServiceList::new(vec![Noop; size]);
    let loaded = PeakEwmaDiscover::new::<u64>(
        endpoints,
        Duration::from_millis(10),
        Duration::from_secs(10),
        CompleteOnResponse::default(),
    );
    Balance::new(loaded)
}

fn tower_constant(size: usize) -> impl Service<u64> {
    let endpoints = (0..size)
        .map(|_| Constant::new(Noop, 1usize))
        .collect::<Vec<_>>();
    Balance::new(ServiceList::new(endpoints))
}

/// Takes every endpoint in, so the first measured call is an ordinary one.
fn warmed<S: Service<u64>>(mut service: S) -> S {
    for request in 0..4 {
        assert!(
            ready_and_call(&mut service, request),
            "the balancer answers"
        );
    }
    service
}

fn bench_row<S: Service<u64>>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    size: usize,
    service: S,
) {
    let mut service = warmed(service);
    let mut request = 0u64;
    let per_call = ALLOCATOR.per_call(10_000, || {
        request = request.wrapping_add(1);
        assert!(ready_and_call(&mut service, request));
    });
    println!("allocations per call: {name}/{size}: {per_call}");
    group.bench_with_input(BenchmarkId::new(name, size), &size, |b, _| {
        b.iter(|| {
            request = request.wrapping_add(1);
            black_box(ready_and_call(&mut service, black_box(request)))
        })
    });
}

fn pick(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick");
    for size in SIZES {
        for strategy in STRATEGIES {
            let name = format!("tower-mesh/{}", strategy.as_str());
            bench_row(&mut group, &name, size, mesh(strategy, size));
        }
        bench_row(
            &mut group,
            "tower/p2c-peak-ewma",
            size,
            tower_peak_ewma(size),
        );
        bench_row(&mut group, "tower/p2c-constant", size, tower_constant(size));
    }
    group.finish();
}

// ===== churn =====

/// A discovery stream fed by the benchmark; pending (never ended) when empty.
struct Feed<S> {
    changes: Arc<Mutex<VecDeque<Change<usize, S>>>>,
}

impl<S> Feed<S> {
    fn new() -> Self {
        Feed {
            changes: Arc::new(Mutex::new(VecDeque::new())),
        }
    }

    fn handle(&self) -> Self {
        Feed {
            changes: self.changes.clone(),
        }
    }

    fn push(&self, change: Change<usize, S>) {
        self.changes.lock().unwrap().push_back(change);
    }
}

impl<S> Stream for Feed<S> {
    type Item = Result<Change<usize, S>, Infallible>;

    fn poll_next(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.changes.lock().unwrap().pop_front() {
            Some(change) => Poll::Ready(Some(Ok(change))),
            None => Poll::Pending,
        }
    }
}

impl<S> Unpin for Feed<S> {}

/// Inserts `CHURN` endpoints, polls the balancer once, removes them, polls again.
fn churn_once<S, B: Service<u64>>(feed: &Feed<S>, balancer: &mut B, endpoint: impl Fn() -> S) {
    let mut cx = Context::from_waker(Waker::noop());
    for key in 0..CHURN {
        feed.push(Change::Insert(key, endpoint()));
    }
    let _ = black_box(balancer.poll_ready(&mut cx));
    for key in 0..CHURN {
        feed.push(Change::Remove(key));
    }
    let _ = black_box(balancer.poll_ready(&mut cx));
}

fn churn(c: &mut Criterion) {
    let mut group = c.benchmark_group("churn");
    group.sample_size(10);

    let feed = Feed::<Noop>::new();
    let mut mesh: LoadBalancer<_, u64> = LoadBalancer::new(feed.handle());
    group.bench_function(BenchmarkId::new("tower-mesh", CHURN), |b| {
        b.iter(|| churn_once(&feed, &mut mesh, || Noop))
    });

    let feed = Feed::<Constant<Noop, usize>>::new();
    let mut tower = Balance::<_, u64>::new(feed.handle());
    group.bench_function(BenchmarkId::new("tower/p2c-constant", CHURN), |b| {
        b.iter(|| churn_once(&feed, &mut tower, || Constant::new(Noop, 1)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20);
    targets = pick, churn
}
criterion_main!(benches);
