//! The delay schedules: the exact sequence of every backoff kind with a fixed
//! seed, observed on tokio's paused clock, and the classic defaults.

mod support;

use std::time::Duration;

use support::{ms, Scripted};
use tower::{Layer, ServiceExt};
use tower_mesh_retry::{Backoff, RetryLayer, RetryPolicy};

const SEED: u64 = 0x5eed;

fn policy(backoff: Backoff, retries: u32, cap: Duration) -> RetryPolicy {
    RetryPolicy::builder()
        .backoff(backoff)
        .max_retries(retries)
        .max_delay(cap)
        .jitter(0.0)
        .seed(SEED)
        .build()
        .unwrap()
}

/// Sends one request through `policy` to a service that never recovers, and
/// returns the time between its attempts.
async fn observed_gaps(policy: RetryPolicy) -> Vec<Duration> {
    let service = Scripted::down();
    let result = RetryLayer::new(policy)
        .layer(service.clone())
        .oneshot(())
        .await;
    assert_eq!(
        result,
        Err("unavailable"),
        "the last error comes back unchanged"
    );
    service.gaps()
}

/// tokio's timer counts whole milliseconds and rounds a deadline up to the next.
fn timer_rounded(delay: Duration) -> Duration {
    Duration::from_millis(delay.as_nanos().div_ceil(1_000_000) as u64)
}

fn expected_gaps(policy: &RetryPolicy) -> Vec<Duration> {
    (1..=policy.max_retries())
        .map(|retry| timer_rounded(policy.get_delay(retry)))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn constant_backoff_waits_the_same_delay_before_every_retry() {
    let gaps = observed_gaps(policy(Backoff::constant(ms(250)), 3, ms(1_000))).await;
    assert_eq!(gaps, [ms(250), ms(250), ms(250)]);
}

#[tokio::test(start_paused = true)]
async fn linear_backoff_adds_one_step_per_retry_up_to_the_cap() {
    let backoff = Backoff::linear(ms(100), ms(150));
    let gaps = observed_gaps(policy(backoff, 5, ms(500))).await;
    assert_eq!(gaps, [ms(100), ms(250), ms(400), ms(500), ms(500)]);
}

#[tokio::test(start_paused = true)]
async fn exponential_backoff_multiplies_by_the_factor_up_to_the_cap() {
    let backoff = Backoff::exponential(ms(10), 3.0);
    let gaps = observed_gaps(policy(backoff, 6, ms(1_000))).await;
    assert_eq!(gaps, [ms(10), ms(30), ms(90), ms(270), ms(810), ms(1_000)]);
}

#[tokio::test(start_paused = true)]
async fn full_jitter_draws_each_delay_below_the_capped_exponential_delay() {
    let policy = policy(Backoff::full_jitter(ms(100), 2.0), 6, ms(2_000));
    let gaps = observed_gaps(policy.clone()).await;
    assert_eq!(gaps, expected_gaps(&policy));

    let ceilings = [100, 200, 400, 800, 1_600, 2_000];
    for (retry, ceiling) in (1..).zip(ceilings) {
        let delay = policy.get_delay(retry);
        assert!(delay < ms(ceiling), "retry {retry}: {delay:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn equal_jitter_keeps_at_least_half_of_each_exponential_delay() {
    let policy = policy(Backoff::equal_jitter(ms(100), 2.0), 6, ms(2_000));
    let gaps = observed_gaps(policy.clone()).await;
    assert_eq!(gaps, expected_gaps(&policy));

    let ceilings = [100, 200, 400, 800, 1_600, 2_000];
    for (retry, ceiling) in (1..).zip(ceilings) {
        let delay = policy.get_delay(retry);
        assert!(
            delay >= ms(ceiling / 2) && delay < ms(ceiling),
            "retry {retry}: {delay:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn decorrelated_jitter_draws_between_the_first_delay_and_three_times_the_previous() {
    let policy = policy(Backoff::decorrelated_jitter(ms(50)), 8, ms(3_000));
    let gaps = observed_gaps(policy.clone()).await;
    assert_eq!(gaps, expected_gaps(&policy));

    let mut previous = ms(50);
    for retry in 1..=8 {
        let delay = policy.get_delay(retry);
        let ceiling = (previous * 3).min(ms(3_000));
        assert!(
            delay >= ms(50) && delay <= ceiling,
            "retry {retry}: {delay:?}"
        );
        previous = delay;
    }
}

#[tokio::test(start_paused = true)]
async fn a_custom_delay_function_sees_the_retry_number_and_the_failed_call() {
    let service = Scripted::new(&[Err("slow down"), Ok(503), Err("unavailable"), Ok(200)]);
    let policy = policy(Backoff::constant(ms(1)), 5, ms(700)).with_classifier(
        tower_mesh_core::classify_result_fn(|result: Result<&u16, &&str>| match result {
            Ok(200) => tower_mesh_core::Outcome::Success,
            _ => tower_mesh_core::Outcome::Failure,
        }),
    );
    let policy = policy.delay_fn(|retry, result: Result<&u16, &&str>| match result {
        Err(&"slow down") => Some(ms(900)),
        Ok(503) => Some(ms(40 * u64::from(retry))),
        _ => Some(ms(5)),
    });

    let response = RetryLayer::new(policy)
        .layer(service.clone())
        .oneshot(())
        .await;
    assert_eq!(response, Ok(200));
    assert_eq!(
        service.gaps(),
        [ms(700), ms(80), ms(5)],
        "capped at max_delay, then 40 ms times the retry number"
    );
}

#[test]
fn a_seed_makes_every_jittered_schedule_reproducible() {
    let kinds = [
        Backoff::full_jitter(ms(100), 2.0),
        Backoff::equal_jitter(ms(100), 2.0),
        Backoff::decorrelated_jitter(ms(100)),
    ];
    for kind in kinds {
        let schedule = |seed| {
            let policy = RetryPolicy::builder()
                .backoff(kind)
                .seed(seed)
                .build()
                .unwrap();
            (1..=10)
                .map(|retry| policy.get_delay(retry))
                .collect::<Vec<_>>()
        };
        assert_eq!(schedule(1), schedule(1), "{kind:?}");
        assert_ne!(schedule(1), schedule(2), "{kind:?}");
    }
}

#[test]
fn retry_zero_has_no_delay() {
    assert_eq!(RetryPolicy::default().get_delay(0), Duration::ZERO);
}

// ===== the classic defaults =====

#[test]
fn default_keeps_three_retries_from_100_ms_doubling_to_at_most_10_s() {
    let policy = RetryPolicy::default();
    assert_eq!(policy.max_retries(), 3);
    assert_eq!(policy.backoff(), Backoff::exponential(ms(100), 2.0));
    assert_eq!(policy.max_delay(), Duration::from_secs(10));
    assert_eq!(policy.jitter(), 0.5);
    assert_eq!(policy.deadline(), None);
    assert!(policy.budget().is_none());
}

#[test]
fn default_jitter_scales_each_delay_by_a_uniform_factor_between_half_and_one_and_a_half() {
    let mut factors = Vec::new();
    for seed in 0..2_000 {
        let policy = RetryPolicy::builder().seed(seed).build().unwrap();
        for (retry, nominal) in [(1, 100.0), (2, 200.0), (3, 400.0)] {
            let factor = policy.get_delay(retry).as_secs_f64() * 1_000.0 / nominal;
            assert!(
                (0.5..=1.5).contains(&factor),
                "seed {seed}, retry {retry}: {factor}"
            );
            factors.push(factor);
        }
    }
    let mean = factors.iter().sum::<f64>() / factors.len() as f64;
    assert!((mean - 1.0).abs() < 0.02, "mean factor {mean}");
    assert!(factors.iter().any(|&f| f < 0.55) && factors.iter().any(|&f| f > 1.45));
}

#[test]
fn jittered_delays_never_exceed_the_cap() {
    let policy = RetryPolicy::builder()
        .backoff(Backoff::exponential(ms(100), 2.0))
        .jitter(1.0)
        .max_delay(ms(150))
        .seed(3)
        .build()
        .unwrap();
    for retry in 1..50 {
        assert!(policy.get_delay(retry) <= ms(150));
    }
}

#[tokio::test(start_paused = true)]
async fn default_policy_makes_four_attempts_spaced_by_the_jittered_doubling_schedule() {
    let service = Scripted::down();
    let policy = RetryPolicy::default();
    let result = RetryLayer::new(policy)
        .layer(service.clone())
        .oneshot(())
        .await;

    assert_eq!(result, Err("unavailable"));
    assert_eq!(service.attempts(), 4);
    for (gap, nominal) in service.gaps().into_iter().zip([100, 200, 400]) {
        assert!(
            gap >= ms(nominal / 2) && gap <= ms(nominal * 3 / 2 + 1),
            "{gap:?} for {nominal} ms"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn unseeded_requests_draw_different_jitter() {
    let policy = RetryPolicy::builder()
        .backoff(Backoff::full_jitter(Duration::from_secs(1), 1.0))
        .max_delay(Duration::from_secs(1))
        .max_retries(1)
        .build()
        .unwrap();
    let mut gaps = Vec::new();
    for _ in 0..5 {
        let service = Scripted::down();
        let layer = RetryLayer::new(policy.clone());
        let _ = layer.layer(service.clone()).oneshot(()).await;
        gaps.extend(service.gaps());
    }
    gaps.dedup();
    assert!(gaps.len() > 1, "five requests all waited {gaps:?}");
}

/// The jittered schedules of `SEED`, in microseconds: a seed must give the same
/// delays in every run and every version, so that a failure seen once can be
/// replayed.
#[test]
fn a_fixed_seed_gives_the_same_jittered_delays_in_every_run() {
    let cases = [
        (
            policy(Backoff::full_jitter(ms(100), 2.0), 6, ms(2_000)),
            vec![27_744, 6_553, 157_639, 34_278, 390_034, 816_638],
        ),
        (
            policy(Backoff::equal_jitter(ms(100), 2.0), 6, ms(2_000)),
            vec![63_872, 103_276, 278_819, 417_139, 995_017, 1_408_319],
        ),
        (
            policy(Backoff::decorrelated_jitter(ms(50)), 8, ms(3_000)),
            vec![
                77_744, 56_004, 96_508, 60_263, 81_882, 129_886, 227_915, 592_765,
            ],
        ),
    ];
    for (policy, expected) in cases {
        let micros: Vec<u128> = (1..=policy.max_retries())
            .map(|retry| policy.get_delay(retry).as_micros())
            .collect();
        assert_eq!(micros, expected, "{:?}", policy.backoff());
    }
}
