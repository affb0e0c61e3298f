//! The retry budget: exact allowances for fractional ratios (where tower's
//! `TpsBudget` gives more), the floor, exhaustion and refill over the sliding
//! window, sharing across clones, and concurrent withdrawals.

mod support;

use std::time::Duration;

use support::{ms, Scripted};
use tower::retry::budget::{Budget, TpsBudget};
use tower::{Layer, ServiceExt};
use tower_mesh_retry::{Backoff, RetryBudget, RetryLayer, RetryPolicy};

fn budget(ratio: f64, floor: u32, window: Duration) -> RetryBudget {
    RetryBudget::builder()
        .ratio(ratio)
        .min_per_second(floor)
        .window(window)
        .build()
        .unwrap()
}

/// Withdrawals granted after `deposits` deposits, asking until refused.
fn granted(deposit: impl Fn(), withdraw: impl Fn() -> bool, deposits: u32) -> u32 {
    (0..deposits).for_each(|_| deposit());
    (0..10_000).take_while(|_| withdraw()).count() as u32
}

fn ours(ratio: f64, deposits: u32) -> u32 {
    let budget = budget(ratio, 0, Duration::from_secs(10));
    granted(|| budget.deposit(), || budget.withdraw(), deposits)
}

fn towers(ratio: f32, deposits: u32) -> u32 {
    let budget = TpsBudget::new(Duration::from_secs(10), 0, ratio);
    granted(|| budget.deposit(), || budget.withdraw(), deposits)
}

/// `floor(ratio * deposits)`, computed in exact integer arithmetic from a ratio
/// written in hundredths.
fn exact(hundredths: u32, deposits: u32) -> u32 {
    hundredths * deposits / 100
}

const FRACTIONAL_RATIOS: [u32; 8] = [10, 25, 30, 40, 60, 70, 90, 99];

#[tokio::test(start_paused = true)]
async fn a_fractional_ratio_grants_exactly_its_share_of_the_deposits() {
    for hundredths in FRACTIONAL_RATIOS {
        for deposits in 1..=30 {
            let ratio = f64::from(hundredths) / 100.0;
            assert_eq!(
                ours(ratio, deposits),
                exact(hundredths, deposits),
                "ratio {ratio} after {deposits} deposits"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn towers_tps_budget_grants_more_than_its_ratio_where_ours_does_not() {
    // Tower prices a retry at `1 / ratio` deposits rounded down to a whole number:
    // at 0.6 each deposit buys a full retry, at 0.3 every third deposit does. Only
    // ratios whose reciprocal is whole (0.1, 0.25) come out exact. Ours never
    // exceeds the ratio.
    let mut tower_over = Vec::new();
    for hundredths in FRACTIONAL_RATIOS {
        for deposits in 1..=10 {
            let ratio = hundredths as f32 / 100.0;
            let allowed = exact(hundredths, deposits);
            if towers(ratio, deposits) > allowed {
                tower_over.push((ratio, deposits));
            }
            assert!(ours(f64::from(ratio), deposits) <= allowed);
        }
    }
    assert!(
        tower_over.contains(&(0.6, 3)),
        "tower grants 3 retries for 3 deposits at 0.6"
    );
    assert!(
        tower_over.contains(&(0.3, 3)),
        "tower grants 1 retry for 3 deposits at 0.3"
    );
    let exact_in_tower = |r: f32| !tower_over.iter().any(|&(ratio, _)| ratio == r);
    assert!(exact_in_tower(0.1) && exact_in_tower(0.25));
    assert_eq!(ours(0.6, 3), 1);
    assert_eq!(ours(0.3, 3), 0);
}

#[tokio::test(start_paused = true)]
async fn the_floor_allows_min_per_second_times_the_window_without_traffic() {
    let budget = budget(0.2, 3, Duration::from_secs(2));
    assert_eq!(granted(|| (), || budget.withdraw(), 0), 6);
    assert!(!budget.withdraw());
    assert_eq!(budget.remaining(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_spent_budget_refills_as_its_withdrawals_leave_the_window() {
    let budget = budget(0.0, 1, Duration::from_secs(10));
    assert_eq!(granted(|| (), || budget.withdraw(), 0), 10);
    assert!(!budget.withdraw(), "spent");

    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(
        !budget.withdraw(),
        "the withdrawals are still in the window"
    );

    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(
        budget.remaining(),
        10,
        "every withdrawal has left the window"
    );
    assert!(budget.withdraw());
}

#[tokio::test(start_paused = true)]
async fn deposits_older_than_the_window_no_longer_earn_retries() {
    let budget = budget(0.5, 0, Duration::from_secs(1));
    for _ in 0..10 {
        budget.deposit();
    }
    assert_eq!(budget.remaining(), 5);

    tokio::time::advance(ms(950)).await;
    assert_eq!(budget.remaining(), 5, "still inside the window");

    tokio::time::advance(ms(100)).await;
    assert_eq!(budget.remaining(), 0);
    assert!(!budget.withdraw());
}

#[tokio::test(start_paused = true)]
async fn clones_share_one_budget() {
    let budget = budget(0.5, 0, Duration::from_secs(10));
    let clone = budget.clone();
    budget.deposit();
    clone.deposit();
    assert!(clone.withdraw());
    assert!(!budget.withdraw());
}

#[test]
fn concurrent_withdrawals_never_exceed_the_allowance() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let _time = runtime.enter();
    let budget = budget(0.25, 0, Duration::from_secs(60));
    for _ in 0..4_000 {
        budget.deposit();
    }

    let granted: u32 = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let budget = budget.clone();
                scope.spawn(move || (0..1_000).filter(|_| budget.withdraw()).count() as u32)
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().unwrap())
            .sum()
    });
    assert!(
        granted <= 1_000,
        "{granted} retries for 4000 deposits at 0.25"
    );
    assert!(granted >= 990, "only {granted} granted");
}

// ===== through the layer =====

#[tokio::test(start_paused = true)]
async fn a_spent_budget_returns_the_last_failure_without_retrying() {
    let budget = budget(0.0, 1, Duration::from_secs(1));
    let policy = RetryPolicy::builder()
        .backoff(Backoff::constant(ms(10)))
        .max_retries(5)
        .budget(budget.clone())
        .build()
        .unwrap();
    let service = Scripted::down();
    let layer = RetryLayer::new(policy);

    let result = layer.layer(service.clone()).oneshot(()).await;
    assert_eq!(result, Err("unavailable"));
    assert_eq!(
        service.attempts(),
        2,
        "the floor of one retry, then the budget is spent"
    );

    let second = Scripted::down();
    let _ = layer.layer(second.clone()).oneshot(()).await;
    assert_eq!(
        second.attempts(),
        1,
        "another service of the layer shares the budget"
    );

    tokio::time::advance(Duration::from_secs(1)).await;
    let third = Scripted::down();
    let _ = layer.layer(third.clone()).oneshot(()).await;
    assert_eq!(third.attempts(), 2, "the budget refilled after its window");
}

#[tokio::test(start_paused = true)]
async fn successful_requests_earn_retries_for_later_failures() {
    let budget = budget(0.5, 0, Duration::from_secs(10));
    let policy = RetryPolicy::builder()
        .backoff(Backoff::constant(ms(1)))
        .max_retries(10)
        .budget(budget.clone())
        .build()
        .unwrap();
    let healthy = RetryLayer::new(policy.clone()).layer(Scripted::failing(0));
    for _ in 0..6 {
        assert_eq!(healthy.clone().oneshot(()).await, Ok(200));
    }

    let down = Scripted::down();
    let _ = RetryLayer::new(policy)
        .layer(down.clone())
        .oneshot(())
        .await;
    // Seven requests at 0.5 earn three retries.
    assert_eq!(down.attempts(), 4);
}
