//! The config builders from arbitrary values: `build` never panics, it returns a
//! `ConfigError` or a config that keeps what was set, and the configs built keep
//! their promises (a retry delay never exceeds its cap, percentages stay within
//! 0 to 100).
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tower_mesh_breaker::{CircuitBreakerConfig, SlidingWindow};
use tower_mesh_fault::{AbortKind, DelayKind, FaultConfig};
use tower_mesh_retry::{Backoff, RetryBudget, RetryPolicy};

#[derive(Debug, Arbitrary)]
struct Input {
    count: u32,
    other_count: u32,
    nanos: u64,
    other_nanos: u64,
    ratio: f64,
    other_ratio: f64,
    choice: u8,
    retry: u32,
}

fn duration(nanos: u64) -> Duration {
    Duration::from_nanos(nanos)
}

fn breaker(input: &Input) {
    let window = match input.choice % 3 {
        0 => None,
        1 => Some(SlidingWindow::count(input.other_count)),
        _ => Some(SlidingWindow::time(duration(input.other_nanos))),
    };
    let mut builder = CircuitBreakerConfig::builder()
        .failure_threshold(input.count)
        .open_duration(duration(input.nanos))
        .failure_rate_threshold(input.ratio)
        .minimum_calls(input.other_count)
        .open_duration_growth(input.other_ratio, duration(input.other_nanos));
    if let Some(window) = window {
        builder = builder.sliding_window(window);
    }
    let Ok(config) = builder.build() else {
        return;
    };
    assert_eq!(config.open_duration(), duration(input.nanos));
    assert_eq!(config.failure_threshold(), Some(input.count));
    assert!((0.0..=100.0).contains(&config.failure_rate_threshold()));
}

fn backoff(input: &Input) -> Backoff {
    let first = duration(input.nanos);
    match input.choice % 5 {
        0 => Backoff::constant(first),
        1 => Backoff::linear(first, duration(input.other_nanos)),
        2 => Backoff::exponential(first, input.ratio),
        3 => Backoff::full_jitter(first, input.ratio),
        _ => Backoff::decorrelated_jitter(first),
    }
}

fn retry(input: &Input) {
    let Ok(policy) = RetryPolicy::builder()
        .max_retries(input.count)
        .backoff(backoff(input))
        .max_delay(duration(input.other_nanos))
        .jitter(input.other_ratio)
        .build()
    else {
        return;
    };
    assert_eq!(policy.max_retries(), input.count);
    // `get_delay` replays every earlier retry for decorrelated jitter, so it takes
    // time in proportion to `retry`: keep it to numbers a stack would reach.
    let delay = policy.get_delay(input.retry % 4_096);
    assert!(
        delay <= policy.max_delay(),
        "{delay:?} over {:?}",
        policy.max_delay()
    );
}

fn budget(input: &Input) {
    let Ok(budget) = RetryBudget::builder()
        .ratio(input.ratio)
        .min_per_second(input.count)
        .window(duration(input.nanos))
        .build()
    else {
        return;
    };
    assert_eq!(budget.ratio(), input.ratio);
    assert_eq!(budget.min_per_second(), input.count);
}

fn faults(input: &Input) {
    let abort = match input.choice % 2 {
        0 => AbortKind::Error,
        _ => AbortKind::Status(input.count as u16),
    };
    let delay = match input.choice % 3 {
        0 => DelayKind::Fixed(duration(input.nanos)),
        1 => DelayKind::Uniform {
            min: duration(input.nanos),
            max: duration(input.other_nanos),
        },
        _ => DelayKind::Exponential {
            mean: duration(input.nanos),
            max: duration(input.other_nanos),
        },
    };
    let built = FaultConfig::builder()
        .abort(input.ratio, abort)
        .delay(input.other_ratio, delay)
        .build();
    let Ok(config) = built else {
        return;
    };
    assert!((0.0..=100.0).contains(&config.abort_percent()));
    assert!((0.0..=100.0).contains(&config.delay_percent()));
}

fuzz_target!(|input: Input| {
    breaker(&input);
    retry(&input);
    budget(&input);
    faults(&input);
});
