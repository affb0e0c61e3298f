//! A circuit breaker around a plain async function, outside tower.
//!
//! Run with `cargo run --example plain_async`. A flaky lookup fails its first
//! calls; the breaker opens, rejects calls without running them, then probes
//! and closes again once the lookup recovers.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tower_mesh_breaker::{with_circuit_breaker, CircuitBreakerConfig, CircuitError};

#[tokio::main]
async fn main() -> Result<(), tower_mesh_core::ConfigError> {
    let config = CircuitBreakerConfig::builder()
        .failure_threshold(3)
        .success_threshold(1)
        .open_duration(Duration::from_millis(200))
        .build()?;

    // The lookup fails its first three calls, then answers.
    let calls = Arc::new(AtomicU32::new(0));
    let lookup = {
        let calls = calls.clone();
        move |user: u32| {
            let attempt = calls.fetch_add(1, Ordering::Relaxed);
            async move {
                if attempt < 3 {
                    Err(format!("lookup of user {user} timed out"))
                } else {
                    Ok(format!("user {user}"))
                }
            }
        }
    };
    let lookup = with_circuit_breaker("user-lookup", config, lookup);
    lookup.breaker().on_state_change(|change| {
        println!(
            "  breaker {}: {} -> {} ({})",
            change.breaker, change.from, change.to, change.reason
        );
    });

    for round in 0..8 {
        match lookup.call(round).await {
            Ok(user) => println!("call {round}: found {user}"),
            Err(CircuitError::Open(open)) => println!("call {round}: skipped, {open}"),
            Err(CircuitError::Inner(error)) => println!("call {round}: failed, {error}"),
        }
        if round == 4 {
            println!("  (waiting for the open duration to pass)");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    println!(
        "the lookup ran {} times for 8 calls",
        calls.load(Ordering::Relaxed)
    );
    Ok(())
}
