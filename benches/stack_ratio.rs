//! The whole stack over hyper on loopback, measured in alternation with a bare
//! client so that the ratio survives a noisy machine.
//!
//! The criterion benchmark in `stack.rs` measures each row for seconds at a
//! time, so a change in the machine's load between two rows moves their ratio.
//! This harness runs the rows in turn, a few hundred milliseconds each, over and
//! over, and reports the median of the per-round ratios to the bare client beside
//! each row's median throughput and its allocations per request.
//!
//! Run with `cargo bench -p tower-mesh-benches --bench stack_ratio`; set
//! `STACK_ROUNDS` (default 30) and `STACK_WAVES` (waves of 64 requests per row
//! per round, default 150) to change the length, and `STACK_ONLY` to a row's
//! number (0 bare, 1 proxy, 2 layers) to run that row alone, for a profiler.

use std::time::Duration;

use tokio::runtime::Runtime;
use tower::ServiceExt;
use tower_mesh_benches::CountingAllocator;

mod stack_support;

use stack_support::{request, servers, waves, Bare, CONCURRENCY};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator::new();

/// The rows, in the order of the report.
const ROWS: [&str; 3] = ["bare hyper-util", "ServiceProxy", "layers, no timeouts"];

fn main() {
    let rounds = setting("STACK_ROUNDS", 30) as usize;
    let per_round = setting("STACK_WAVES", 150);
    let runtime = Runtime::new().expect("a multi-threaded runtime");
    let addrs = runtime.block_on(servers(3));
    let bare = Bare::new(&addrs);
    let (proxy, _registry) = runtime
        .block_on(async { stack_support::proxy(&addrs) })
        .expect("a valid proxy");
    let (layers, _layers_registry) = runtime.block_on(async { stack_support::layers(&addrs) });

    let run = |row: usize, count: u64| -> Duration {
        runtime.block_on(async {
            match row {
                0 => {
                    waves(count, || {
                        let bare = bare.clone();
                        async move { bare.send().await }
                    })
                    .await
                }
                1 => waves(count, || proxy.call(request())).await,
                _ => waves(count, || layers.clone().oneshot(request())).await,
            }
        })
    };

    let only = std::env::var("STACK_ONLY")
        .ok()
        .and_then(|row| row.parse().ok());
    if let Some(row) = only.filter(|row: &usize| *row < ROWS.len()) {
        let elapsed = run(row, rounds as u64 * per_round);
        let requests = rounds as u64 * per_round * CONCURRENCY as u64;
        println!(
            "{}: {:.0} requests/s",
            ROWS[row],
            requests as f64 / elapsed.as_secs_f64()
        );
        return;
    }
    // Warm up every row: connections open, pools fill, the allocator settles.
    for row in 0..ROWS.len() {
        run(row, per_round);
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); ROWS.len()];
    let mut allocations = [0u64; ROWS.len()];
    for round in 0..rounds {
        // Rotate the order so that no row always follows the same one.
        for step in 0..ROWS.len() {
            let row = (round + step) % ROWS.len();
            let before = ALLOCATOR.allocations();
            let elapsed = run(row, per_round);
            allocations[row] += ALLOCATOR.allocations() - before;
            times[row].push(elapsed.as_secs_f64() / per_round as f64);
        }
    }
    report(
        &times,
        &allocations,
        rounds as u64 * per_round * CONCURRENCY as u64,
    );
}

/// Prints each row's median time per wave, throughput, median ratio to bare
/// (with the quartiles of the per-round ratios) and allocations per request.
fn report(times: &[Vec<f64>], allocations: &[u64], requests: u64) {
    println!(
        "{:<22} {:>12} {:>12} {:>8} {:>17} {:>12}",
        "row", "per wave", "requests/s", "ratio", "ratio quartiles", "allocs/req"
    );
    for (row, name) in ROWS.iter().enumerate() {
        let ratios: Vec<f64> = times[0]
            .iter()
            .zip(&times[row])
            .map(|(bare, this)| bare / this)
            .collect();
        let per_wave = median(&times[row]);
        println!(
            "{:<22} {:>9.1} µs {:>12.0} {:>8.3} {:>8.3} – {:<6.3} {:>12.1}",
            name,
            per_wave * 1e6,
            CONCURRENCY as f64 / per_wave,
            median(&ratios),
            quantile(&ratios, 0.25),
            quantile(&ratios, 0.75),
            allocations[row] as f64 / requests as f64,
        );
    }
}

fn median(values: &[f64]) -> f64 {
    quantile(values, 0.5)
}

fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index]
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}
