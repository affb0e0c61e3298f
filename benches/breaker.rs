//! The cost of a circuit breaker on a closed-state call, side by side.
//!
//! Every row calls a no-op service (`poll_ready` then `call`, polled by hand) so
//! that what is measured is the middleware alone:
//!
//! - `bare`: the no-op service itself;
//! - `tower-mesh/*`: under [`CircuitBreakerLayer`], with the default configuration
//!   (consecutive failures), a count window, a time window, and slow-call tracking;
//!   rows marked `leaked` use a breaker made with [`CircuitBreaker::leak`], whose
//!   handles skip reference counting;
//! - `tower-resilience`: under tower-resilience 0.13's circuit breaker, defaults;
//! - `failsafe`: under failsafe 1.3's default breaker, through a minimal adapter.
//!
//! The `2 threads` group runs the same rows with two threads calling clones of one
//! service (so one breaker) at once, and reports the time per call on each thread.
//!
//! Before measuring, each row's heap allocations per call are counted and printed.
//!
//! Run with `cargo bench -p tower-mesh-benches --bench breaker`.

// criterion's macros generate an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Barrier;
use std::task::{Context, Poll};
use std::thread;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use tokio::runtime::Handle;
use tokio::time::Instant;
use tower::{Layer, Service};
use tower_mesh_benches::{ready_and_call, CountingAllocator, Noop};
use tower_mesh_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, SlidingWindow,
};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator::new();

// ===== the rows =====

fn mesh(config: CircuitBreakerConfig) -> impl Service<u64> + Clone + Send {
    CircuitBreakerLayer::new(CircuitBreaker::new("bench", config)).layer(Noop)
}

/// The same, with a breaker kept for the life of the program (no reference counting).
fn mesh_leaked(config: CircuitBreakerConfig) -> impl Service<u64> + Clone + Send {
    CircuitBreakerLayer::new(CircuitBreaker::new("bench", config).leak()).layer(Noop)
}

fn mesh_count_window() -> CircuitBreakerConfig {
    CircuitBreakerConfig::builder()
        .sliding_window(SlidingWindow::count(100))
        .build()
        .expect("a valid count window")
}

fn mesh_time_window() -> CircuitBreakerConfig {
    CircuitBreakerConfig::builder()
        .sliding_window(SlidingWindow::time(Duration::from_secs(10)))
        .build()
        .expect("a valid time window")
}

fn mesh_slow_calls() -> CircuitBreakerConfig {
    CircuitBreakerConfig::builder()
        .sliding_window(SlidingWindow::count(100))
        .slow_call_duration(Duration::from_secs(1))
        .slow_call_rate_threshold(50.0)
        .build()
        .expect("a valid slow-call configuration")
}

fn tower_resilience() -> impl Service<u64> + Clone + Send {
    tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
        .build()
        .expect("tower-resilience defaults")
        .layer(Noop)
}

fn failsafe() -> impl Service<u64> + Clone + Send {
    Failsafe {
        breaker: failsafe::Config::new().build(),
        inner: Noop,
    }
}

/// failsafe has no tower layer: this adapter wraps each call's future in its breaker.
#[derive(Clone)]
struct Failsafe<B, S> {
    breaker: B,
    inner: S,
}

impl<B, S> Service<u64> for Failsafe<B, S>
where
    B: failsafe::futures::CircuitBreaker,
    S: Service<u64>,
{
    type Response = S::Response;
    type Error = failsafe::Error<S::Error>;
    type Future = failsafe::futures::ResponseFuture<
        S::Future,
        B::FailurePolicy,
        B::Instrument,
        failsafe::Any,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(failsafe::Error::Inner)
    }

    fn call(&mut self, request: u64) -> Self::Future {
        self.breaker.call(self.inner.call(request))
    }
}

// ===== measuring =====

/// Prints the row's heap allocations per call, counted over many calls.
fn report_allocations<S: Service<u64>>(row: &str, mut service: S) {
    let per_call = ALLOCATOR.per_call(10_000, || {
        assert!(
            ready_and_call(&mut service, 1),
            "{row}: a closed-state call succeeds"
        );
    });
    println!("allocations per call: {row}: {per_call}");
}

/// Runs `iters` calls on each of two threads sharing `service`'s state; returns the
/// wall time, which is the time per call on each thread times `iters`.
fn on_two_threads<S>(service: &S, runtime: &Handle, iters: u64) -> Duration
where
    S: Service<u64> + Clone + Send,
{
    let start_line = Barrier::new(3);
    thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let mut service = service.clone();
                let start_line = &start_line;
                scope.spawn(move || {
                    let _runtime = runtime.enter();
                    start_line.wait();
                    for request in 0..iters {
                        black_box(ready_and_call(&mut service, black_box(request)));
                    }
                })
            })
            .collect();
        start_line.wait();
        let started = Instant::now();
        for worker in workers {
            worker.join().expect("a benchmark thread");
        }
        started.elapsed()
    })
}

fn bench_row<S>(c: &mut Criterion, runtime: &Handle, row: &str, service: S)
where
    S: Service<u64> + Clone + Send,
{
    report_allocations(row, service.clone());

    let mut one = service.clone();
    c.benchmark_group("breaker/1 thread")
        .bench_function(BenchmarkId::from_parameter(row), |b| {
            let mut request = 0u64;
            b.iter(|| {
                request = request.wrapping_add(1);
                black_box(ready_and_call(&mut one, black_box(request)))
            })
        });

    c.benchmark_group("breaker/2 threads")
        .bench_function(BenchmarkId::from_parameter(row), |b| {
            b.iter_custom(|iters| on_two_threads(&service, runtime, iters))
        });
}

fn breakers(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime for the peers that need one");
    let _entered = runtime.enter();
    let handle = runtime.handle();

    bench_row(c, handle, "bare", Noop);
    let (default, count, time, slow) = (
        CircuitBreakerConfig::default(),
        mesh_count_window(),
        mesh_time_window(),
        mesh_slow_calls(),
    );
    bench_row(c, handle, "tower-mesh/default", mesh(default.clone()));
    bench_row(
        c,
        handle,
        "tower-mesh/default, leaked",
        mesh_leaked(default),
    );
    bench_row(c, handle, "tower-mesh/count window", mesh(count.clone()));
    bench_row(
        c,
        handle,
        "tower-mesh/count window, leaked",
        mesh_leaked(count),
    );
    bench_row(c, handle, "tower-mesh/time window", mesh(time));
    bench_row(c, handle, "tower-mesh/slow calls", mesh(slow));
    bench_row(c, handle, "tower-resilience", tower_resilience());
    bench_row(c, handle, "failsafe", failsafe());
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = breakers
}
criterion_main!(benches);
