//! The builders reject every nonsensical value with an error naming the field,
//! and never panic.

use std::time::Duration;

use tower_mesh_retry::{Backoff, RetryBudget, RetryBudgetBuilder, RetryPolicy, RetryPolicyBuilder};

fn rejected(builder: RetryPolicyBuilder) -> &'static str {
    builder
        .build()
        .expect_err("the builder should reject this")
        .field()
}

fn budget_rejected(builder: RetryBudgetBuilder) -> &'static str {
    builder
        .build()
        .expect_err("the builder should reject this")
        .field()
}

fn with_backoff(backoff: Backoff) -> RetryPolicyBuilder {
    RetryPolicy::builder().backoff(backoff)
}

const FIRST: Duration = Duration::from_millis(100);

#[test]
fn a_growth_factor_that_is_nan_infinite_zero_negative_or_below_one_is_rejected() {
    for factor in [f64::NAN, f64::INFINITY, 0.0, -2.0, 0.5] {
        for kind in [
            Backoff::exponential,
            Backoff::full_jitter,
            Backoff::equal_jitter,
        ] {
            let backoff = kind(FIRST, factor);
            assert_eq!(rejected(with_backoff(backoff)), "backoff", "{backoff:?}");
        }
    }
}

#[test]
fn the_error_says_what_is_wrong_with_the_value() {
    let error = with_backoff(Backoff::exponential(FIRST, -1.0))
        .build()
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid `backoff`: factor must be a finite number of at least 1, got -1"
    );
}

#[test]
fn a_cap_below_the_first_delay_is_rejected() {
    let kinds = [
        Backoff::constant(FIRST),
        Backoff::linear(FIRST, FIRST),
        Backoff::exponential(FIRST, 2.0),
        Backoff::decorrelated_jitter(FIRST),
    ];
    for backoff in kinds {
        let builder = with_backoff(backoff).max_delay(Duration::from_millis(99));
        assert_eq!(rejected(builder), "max_delay", "{backoff:?}");
    }
    let equal = with_backoff(Backoff::constant(FIRST)).max_delay(FIRST);
    assert!(
        equal.build().is_ok(),
        "a cap equal to the first delay is fine"
    );
}

#[test]
fn jitter_outside_zero_to_one_or_nan_is_rejected() {
    for jitter in [f64::NAN, -0.1, 1.01, f64::INFINITY] {
        assert_eq!(rejected(RetryPolicy::builder().jitter(jitter)), "jitter");
    }
    assert!(RetryPolicy::builder().jitter(0.0).build().is_ok());
    assert!(RetryPolicy::builder().jitter(1.0).build().is_ok());
}

#[test]
fn a_zero_deadline_is_rejected() {
    let builder = RetryPolicy::builder().deadline(Duration::ZERO);
    assert_eq!(rejected(builder), "deadline");
}

#[test]
fn a_budget_ratio_outside_zero_to_one_or_nan_is_rejected() {
    for ratio in [f64::NAN, -0.01, 1.5, f64::NEG_INFINITY] {
        assert_eq!(
            budget_rejected(RetryBudget::builder().ratio(ratio)),
            "ratio"
        );
    }
    for ratio in [0.0, 1.0] {
        assert!(RetryBudget::builder().ratio(ratio).build().is_ok());
    }
}

#[test]
fn a_budget_window_outside_ten_milliseconds_to_an_hour_is_rejected() {
    for window in [
        Duration::ZERO,
        Duration::from_millis(9),
        Duration::from_secs(3_601),
    ] {
        assert_eq!(
            budget_rejected(RetryBudget::builder().window(window)),
            "window"
        );
    }
}

#[test]
fn the_budget_defaults_are_twenty_percent_and_ten_per_second_over_ten_seconds() {
    let budget = RetryBudget::builder().build().unwrap();
    assert_eq!(budget.ratio(), 0.2);
    assert_eq!(budget.min_per_second(), 10);
    assert_eq!(budget.window(), Duration::from_secs(10));
    let default = RetryBudget::default();
    assert_eq!(
        (default.ratio(), default.min_per_second(), default.window()),
        (0.2, 10, Duration::from_secs(10))
    );
}

#[test]
fn extreme_but_valid_values_build_and_never_panic() {
    let policy = RetryPolicy::builder()
        .backoff(Backoff::exponential(Duration::MAX, f64::MAX))
        .max_delay(Duration::MAX)
        .jitter(0.0)
        .max_retries(u32::MAX)
        .deadline(Duration::MAX)
        .build()
        .unwrap();
    assert_eq!(policy.get_delay(u32::MAX), Duration::MAX);

    let linear = RetryPolicy::builder()
        .backoff(Backoff::linear(Duration::ZERO, Duration::MAX))
        .max_delay(Duration::MAX)
        .jitter(0.0)
        .build()
        .unwrap();
    assert_eq!(linear.get_delay(u32::MAX), Duration::MAX);

    let budget = RetryBudget::builder()
        .min_per_second(u32::MAX)
        .window(Duration::from_secs(3_600));
    assert!(budget.build().unwrap().remaining() > 0);
}
