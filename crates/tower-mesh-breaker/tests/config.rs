//! The configuration builder rejects every nonsensical value with an error that
//! names the field, and never panics.

use std::time::Duration;

use tower_mesh_breaker::{CircuitBreakerConfig, CircuitBreakerConfigBuilder, SlidingWindow};

fn rejected(builder: CircuitBreakerConfigBuilder) -> &'static str {
    builder
        .build()
        .expect_err("the builder should reject this")
        .field()
}

fn builder() -> CircuitBreakerConfigBuilder {
    CircuitBreakerConfig::builder()
}

#[test]
fn default_keeps_the_classic_numbers() {
    let config = CircuitBreakerConfig::default();
    assert_eq!(config.failure_threshold(), Some(5));
    assert_eq!(config.success_threshold(), 2);
    assert_eq!(config.open_duration(), Duration::from_secs(30));
    assert_eq!(config.half_open_max_calls(), 3);
    assert_eq!(config.sliding_window(), None);
    assert_eq!(builder().build().unwrap(), config);
}

#[test]
fn zero_failure_threshold_is_rejected() {
    assert_eq!(
        rejected(builder().failure_threshold(0)),
        "failure_threshold"
    );
}

#[test]
fn zero_success_threshold_is_rejected() {
    assert_eq!(
        rejected(builder().success_threshold(0)),
        "success_threshold"
    );
}

#[test]
fn zero_permitted_probes_are_rejected() {
    assert_eq!(
        rejected(builder().half_open_max_calls(0)),
        "half_open_max_calls"
    );
}

#[test]
fn more_probes_than_the_breaker_can_count_are_rejected() {
    assert_eq!(
        rejected(builder().half_open_max_calls(70_000)),
        "half_open_max_calls"
    );
    assert_eq!(
        rejected(builder().success_threshold(70_000)),
        "success_threshold"
    );
}

#[test]
fn zero_open_duration_is_rejected() {
    assert_eq!(
        rejected(builder().open_duration(Duration::ZERO)),
        "open_duration"
    );
}

#[test]
fn zero_half_open_wait_is_rejected() {
    let builder = builder().max_half_open_wait(Some(Duration::ZERO));
    assert_eq!(rejected(builder), "max_half_open_wait");
}

#[test]
fn failure_rate_outside_zero_to_a_hundred_percent_is_rejected() {
    for bad in [0.0, -1.0, 100.5, 150.0, f64::NAN, f64::INFINITY] {
        assert_eq!(
            rejected(builder().failure_rate_threshold(bad)),
            "failure_rate_threshold"
        );
    }
    assert!(builder().failure_rate_threshold(100.0).build().is_ok());
}

#[test]
fn slow_call_rate_outside_zero_to_a_hundred_percent_is_rejected() {
    let window = SlidingWindow::count(10);
    for bad in [0.0, 101.0, f64::NAN] {
        let builder = builder()
            .sliding_window(window)
            .slow_call_rate_threshold(bad);
        assert_eq!(rejected(builder), "slow_call_rate_threshold");
    }
}

#[test]
fn zero_count_window_is_rejected() {
    assert_eq!(
        rejected(builder().sliding_window(SlidingWindow::count(0))),
        "sliding_window"
    );
}

#[test]
fn oversized_count_window_is_rejected() {
    let window = SlidingWindow::count(2_000_000);
    assert_eq!(rejected(builder().sliding_window(window)), "sliding_window");
}

#[test]
fn zero_time_window_is_rejected() {
    let window = SlidingWindow::time(Duration::ZERO);
    assert_eq!(rejected(builder().sliding_window(window)), "sliding_window");
}

#[test]
fn time_window_without_buckets_is_rejected() {
    let window = SlidingWindow::Time {
        duration: Duration::from_secs(10),
        buckets: 0,
    };
    assert_eq!(rejected(builder().sliding_window(window)), "sliding_window");
}

#[test]
fn zero_minimum_calls_is_rejected() {
    assert_eq!(rejected(builder().minimum_calls(0)), "minimum_calls");
}

#[test]
fn minimum_calls_above_the_count_window_is_rejected() {
    let builder = builder()
        .sliding_window(SlidingWindow::count(10))
        .minimum_calls(11);
    assert_eq!(rejected(builder), "minimum_calls");
}

#[test]
fn slow_call_tracking_without_a_window_is_rejected() {
    let builder = builder().slow_call_duration(Duration::from_secs(1));
    assert_eq!(rejected(builder), "sliding_window");
}

#[test]
fn zero_slow_call_duration_is_rejected() {
    let builder = builder()
        .sliding_window(SlidingWindow::count(10))
        .slow_call_duration(Duration::ZERO);
    assert_eq!(rejected(builder), "slow_call_duration");
}

#[test]
fn shrinking_or_invalid_growth_is_rejected() {
    let max = Duration::from_secs(60);
    for bad in [0.5, 0.0, -2.0, f64::NAN, f64::INFINITY] {
        assert_eq!(
            rejected(builder().open_duration_growth(bad, max)),
            "open_duration_growth"
        );
    }
}

#[test]
fn growth_cap_below_the_open_duration_is_rejected() {
    let builder = builder()
        .open_duration(Duration::from_secs(30))
        .open_duration_growth(2.0, Duration::from_secs(10));
    assert_eq!(rejected(builder), "open_duration_growth");
}

#[test]
fn jitter_outside_zero_to_one_is_rejected() {
    for bad in [-0.1, 1.5, f64::NAN] {
        assert_eq!(
            rejected(builder().open_duration_jitter(bad)),
            "open_duration_jitter"
        );
    }
}

#[test]
fn errors_explain_the_value_they_reject() {
    let error = builder().failure_rate_threshold(150.0).build().unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid `failure_rate_threshold`: must be a percentage in (0, 100], got 150"
    );
}

#[test]
fn an_explicit_failure_threshold_survives_a_window() {
    let config = builder()
        .sliding_window(SlidingWindow::count(10))
        .failure_threshold(3)
        .build()
        .unwrap();
    assert_eq!(config.failure_threshold(), Some(3));
}
