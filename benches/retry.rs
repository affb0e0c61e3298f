//! The cost of retry middleware when the first attempt succeeds, side by side.
//!
//! Every row calls a no-op service (`poll_ready` then `call`, polled by hand) so
//! that what is measured is the middleware alone:
//!
//! - `bare`: the no-op service itself;
//! - `tower-mesh/no budget`: under [`RetryLayer`] with [`RetryPolicy::default`];
//! - `tower-mesh/budget`: the same with the default [`RetryBudget`] (20 %, 10 per
//!   second, 10 s);
//! - `tower/minimal policy`: under `tower::retry::Retry` with the smallest useful
//!   policy (a retry count, cloned requests);
//! - `tower/TpsBudget`: the same policy spending a shared `TpsBudget` with the same
//!   numbers, as tower documents it;
//! - `tower-mesh policy in tower::retry::Retry`: our policy driving tower's
//!   middleware, with the default budget;
//! - `tower-resilience`: under tower-resilience 0.13's retry layer, defaults.
//!
//! Before measuring, each row's heap allocations per call are counted and
//! printed; the tower-mesh rows must make none.
//!
//! Run with `cargo bench -p tower-mesh-benches --bench retry`.

// criterion's macros generate an undocumented public function.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::future::{ready, Ready};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use tower::retry::budget::{Budget, TpsBudget};
use tower::retry::Policy;
use tower::{Layer, Service};
use tower_mesh_benches::{ready_and_call, CountingAllocator, Noop};
use tower_mesh_retry::{RetryBudget, RetryLayer, RetryPolicy};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator::new();

// ===== tower's own policies =====

/// The least a tower policy needs: a retry count, and requests cloned.
#[derive(Debug, Clone)]
struct Attempts(u32);

impl<Res, E> Policy<u64, Res, E> for Attempts {
    type Future = Ready<()>;

    fn retry(&mut self, _: &mut u64, result: &mut Result<Res, E>) -> Option<Self::Future> {
        if result.is_ok() || self.0 == 0 {
            return None;
        }
        self.0 -= 1;
        Some(ready(()))
    }

    fn clone_request(&mut self, request: &u64) -> Option<u64> {
        Some(*request)
    }
}

/// The same, spending a shared `TpsBudget`: successes deposit, retries withdraw.
#[derive(Debug, Clone)]
struct Budgeted {
    attempts: u32,
    budget: Arc<TpsBudget>,
}

impl<Res, E> Policy<u64, Res, E> for Budgeted {
    type Future = Ready<()>;

    fn retry(&mut self, _: &mut u64, result: &mut Result<Res, E>) -> Option<Self::Future> {
        if result.is_ok() {
            self.budget.deposit();
            return None;
        }
        if self.attempts == 0 || !self.budget.withdraw() {
            return None;
        }
        self.attempts -= 1;
        Some(ready(()))
    }

    fn clone_request(&mut self, request: &u64) -> Option<u64> {
        Some(*request)
    }
}

// ===== the rows =====

fn mesh(policy: RetryPolicy) -> impl Service<u64> + Clone {
    RetryLayer::new(policy).layer(Noop)
}

fn with_budget() -> RetryPolicy {
    RetryPolicy::builder()
        .budget(RetryBudget::default())
        .build()
        .expect("a valid policy")
}

fn tower_minimal() -> impl Service<u64> + Clone {
    tower::retry::Retry::new(Attempts(3), Noop)
}

fn tower_tps_budget() -> impl Service<u64> + Clone {
    let budget = Arc::new(TpsBudget::new(Duration::from_secs(10), 10, 0.2));
    tower::retry::Retry::new(
        Budgeted {
            attempts: 3,
            budget,
        },
        Noop,
    )
}

fn mesh_policy_in_tower() -> impl Service<u64> + Clone {
    tower::retry::Retry::new(with_budget(), Noop)
}

fn tower_resilience() -> impl Service<u64> + Clone {
    tower_resilience::retry::RetryLayer::<u64, u64, Infallible>::builder()
        .build()
        .layer(Noop)
}

// ===== measuring =====

/// Heap allocations per call of the row, counted over many calls.
fn allocations_per_call<S: Service<u64>>(row: &str, mut service: S) -> f64 {
    let per_call = ALLOCATOR.per_call(10_000, || {
        assert!(ready_and_call(&mut service, 1), "{row}: the call succeeds");
    });
    println!("allocations per call: {row}: {per_call}");
    per_call
}

fn bench_row<S: Service<u64> + Clone>(c: &mut Criterion, row: &str, service: S) -> f64 {
    let allocations = allocations_per_call(row, service.clone());
    let mut service = service;
    c.benchmark_group("retry/first attempt succeeds")
        .bench_function(BenchmarkId::from_parameter(row), |b| {
            let mut request = 0u64;
            b.iter(|| {
                request = request.wrapping_add(1);
                black_box(ready_and_call(&mut service, black_box(request)))
            })
        });
    allocations
}

fn retries(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime for the clocks and timers");
    let _entered = runtime.enter();

    bench_row(c, "bare", Noop);
    let ours = [
        bench_row(c, "tower-mesh/no budget", mesh(RetryPolicy::default())),
        bench_row(c, "tower-mesh/budget", mesh(with_budget())),
    ];
    bench_row(c, "tower/minimal policy", tower_minimal());
    bench_row(c, "tower/TpsBudget", tower_tps_budget());
    let in_tower = bench_row(
        c,
        "tower-mesh policy in tower::retry::Retry",
        mesh_policy_in_tower(),
    );
    bench_row(c, "tower-resilience", tower_resilience());

    assert!(
        ours.iter()
            .chain([&in_tower])
            .all(|&per_call| per_call == 0.0),
        "tower-mesh rows allocate nothing when the first attempt succeeds: {ours:?}, {in_tower}"
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = retries
}
criterion_main!(benches);
