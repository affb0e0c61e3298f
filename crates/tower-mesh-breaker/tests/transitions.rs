//! Every state transition of the breaker, driven with tokio's paused clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::advance;
use tower_mesh_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitState, SlidingWindow, StateTransition,
};
use tower_mesh_core::Outcome;

fn breaker(config: CircuitBreakerConfig) -> CircuitBreaker {
    CircuitBreaker::new("test", config)
}

fn fail(breaker: &CircuitBreaker, times: usize) {
    for _ in 0..times {
        breaker.try_acquire().expect("admitted").failure();
    }
}

fn succeed(breaker: &CircuitBreaker, times: usize) {
    for _ in 0..times {
        breaker.try_acquire().expect("admitted").success();
    }
}

/// Records every transition as `(from, to)`.
fn journal(breaker: &CircuitBreaker) -> Arc<Mutex<Vec<(CircuitState, CircuitState)>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    breaker.on_state_change(move |change: &StateTransition| {
        sink.lock().unwrap().push((change.from, change.to));
    });
    seen
}

// ===== the classic defaults =====

#[tokio::test(start_paused = true)]
async fn default_opens_after_five_consecutive_failures() {
    let breaker = breaker(CircuitBreakerConfig::default());
    fail(&breaker, 4);
    assert_eq!(breaker.state(), CircuitState::Closed);
    fail(&breaker, 1);
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_success_resets_the_consecutive_failure_count() {
    let breaker = breaker(CircuitBreakerConfig::default());
    fail(&breaker, 4);
    succeed(&breaker, 1);
    fail(&breaker, 4);
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert_eq!(breaker.metrics().consecutive_failures, 4);
}

#[tokio::test(start_paused = true)]
async fn default_stays_open_thirty_seconds_then_probes() {
    let breaker = breaker(CircuitBreakerConfig::default());
    fail(&breaker, 5);

    advance(Duration::from_millis(29_999)).await;
    let rejected = breaker.try_acquire().unwrap_err();
    assert_eq!(rejected.state(), CircuitState::Open);
    assert_eq!(rejected.retry_after(), Some(Duration::from_millis(1)));

    advance(Duration::from_millis(1)).await;
    let probe = breaker.try_acquire().expect("a probe after 30 s");
    assert_eq!(probe.admitted_in(), CircuitState::HalfOpen);
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
}

#[tokio::test(start_paused = true)]
async fn default_admits_at_most_three_probes_at_once() {
    let breaker = breaker(CircuitBreakerConfig::default());
    fail(&breaker, 5);
    advance(Duration::from_secs(30)).await;

    let probes: Vec<_> = (0..3)
        .map(|_| breaker.try_acquire().expect("probe"))
        .collect();
    let fourth = breaker.try_acquire().unwrap_err();
    assert_eq!(fourth.state(), CircuitState::HalfOpen);
    assert_eq!(fourth.retry_after(), None);
    assert_eq!(breaker.metrics().half_open_probes, 3);
    drop(probes);
}

#[tokio::test(start_paused = true)]
async fn default_closes_after_two_successful_probes() {
    let breaker = breaker(CircuitBreakerConfig::default());
    let seen = journal(&breaker);
    fail(&breaker, 5);
    advance(Duration::from_secs(30)).await;

    succeed(&breaker, 1);
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    succeed(&breaker, 1);
    assert_eq!(breaker.state(), CircuitState::Closed);

    use CircuitState::*;
    assert_eq!(
        *seen.lock().unwrap(),
        [(Closed, Open), (Open, HalfOpen), (HalfOpen, Closed)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_opens_the_breaker_again() {
    let breaker = breaker(CircuitBreakerConfig::default());
    fail(&breaker, 5);
    advance(Duration::from_secs(30)).await;

    succeed(&breaker, 1);
    fail(&breaker, 1);
    assert_eq!(breaker.state(), CircuitState::Open);
    assert_eq!(
        breaker.try_acquire().unwrap_err().retry_after(),
        Some(Duration::from_secs(30))
    );
}

#[tokio::test(start_paused = true)]
async fn a_closed_breaker_starts_counting_afresh() {
    let breaker = breaker(CircuitBreakerConfig::default());
    fail(&breaker, 5);
    advance(Duration::from_secs(30)).await;
    succeed(&breaker, 2);

    fail(&breaker, 4);
    assert_eq!(breaker.state(), CircuitState::Closed);
}

// ===== probes and permits =====

#[tokio::test(start_paused = true)]
async fn a_dropped_probe_frees_its_slot_and_counts_nothing() {
    let config = CircuitBreakerConfig::builder()
        .half_open_max_calls(1)
        .build()
        .unwrap();
    let breaker = breaker(config);
    fail(&breaker, 5);
    advance(Duration::from_secs(30)).await;

    let probe = breaker.try_acquire().expect("probe");
    assert!(breaker.try_acquire().is_err());
    drop(probe);

    assert_eq!(breaker.metrics().half_open_probes, 0);
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    assert!(breaker.try_acquire().is_ok());
}

#[tokio::test(start_paused = true)]
async fn an_ignored_probe_frees_its_slot_without_counting_a_success() {
    let config = CircuitBreakerConfig::builder()
        .success_threshold(1)
        .build()
        .unwrap();
    let breaker = breaker(config);
    fail(&breaker, 5);
    advance(Duration::from_secs(30)).await;

    breaker
        .try_acquire()
        .unwrap()
        .record(Outcome::Ignored, Duration::ZERO);
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    assert_eq!(breaker.metrics().half_open_probes, 0);
}

#[tokio::test(start_paused = true)]
async fn probes_beyond_the_limit_are_admitted_as_earlier_ones_finish() {
    let config = CircuitBreakerConfig::builder()
        .half_open_max_calls(1)
        .success_threshold(3)
        .build()
        .unwrap();
    let breaker = breaker(config);
    fail(&breaker, 5);
    advance(Duration::from_secs(30)).await;

    for _ in 0..2 {
        let probe = breaker.try_acquire().expect("one probe at a time");
        assert!(breaker.try_acquire().is_err());
        probe.success();
    }
    succeed(&breaker, 1);
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn an_outcome_from_before_a_trip_is_not_counted_after_it() {
    let config = CircuitBreakerConfig::builder()
        .failure_threshold(1)
        .build()
        .unwrap();
    let breaker = breaker(config);
    let late = breaker.try_acquire().unwrap();
    fail(&breaker, 1);
    advance(Duration::from_secs(30)).await;

    let probe = breaker.try_acquire().unwrap();
    late.failure(); // admitted while closed; the breaker has moved on
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
    probe.success();
    assert_eq!(breaker.metrics().half_open_probes, 0);
}

#[tokio::test(start_paused = true)]
async fn half_open_gives_up_after_its_maximum_wait() {
    let config = CircuitBreakerConfig::builder()
        .max_half_open_wait(Some(Duration::from_secs(10)))
        .half_open_max_calls(1)
        .build()
        .unwrap();
    let breaker = breaker(config);
    fail(&breaker, 5);
    advance(Duration::from_secs(30)).await;
    let _stuck = breaker.try_acquire().expect("probe that never finishes");

    advance(Duration::from_secs(10)).await;
    let rejected = breaker.try_acquire().unwrap_err();
    assert_eq!(rejected.state(), CircuitState::Open);
    assert_eq!(breaker.state(), CircuitState::Open);

    advance(Duration::from_secs(30)).await;
    assert!(
        breaker.try_acquire().is_ok(),
        "fresh probe slots after the next open period"
    );
}

#[tokio::test(start_paused = true)]
async fn without_a_maximum_wait_half_open_waits_for_its_probes() {
    let config = CircuitBreakerConfig::builder()
        .max_half_open_wait(None)
        .build()
        .unwrap();
    let breaker = breaker(config);
    fail(&breaker, 5);
    advance(Duration::from_secs(30)).await;
    let _probe = breaker.try_acquire().unwrap();

    advance(Duration::from_secs(3_600)).await;
    assert!(breaker.try_acquire().is_ok());
    assert_eq!(breaker.state(), CircuitState::HalfOpen);
}

// ===== the classic can_execute / record API =====

#[tokio::test(start_paused = true)]
async fn can_execute_reserves_probe_slots_that_record_gives_back() {
    let config = CircuitBreakerConfig::builder()
        .half_open_max_calls(2)
        .build()
        .unwrap();
    let breaker = breaker(config);
    for _ in 0..5 {
        assert!(breaker.can_execute());
        breaker.record_failure();
    }
    assert!(!breaker.can_execute());
    advance(Duration::from_secs(30)).await;

    assert!(breaker.can_execute());
    assert!(breaker.can_execute());
    assert!(!breaker.can_execute(), "only two probes at once");
    breaker.record_success();
    assert!(breaker.can_execute());
    breaker.record_success();
    assert_eq!(breaker.state(), CircuitState::Closed);
}

// ===== growing open durations =====

#[tokio::test(start_paused = true)]
async fn open_duration_doubles_on_each_trip_up_to_its_cap() {
    let config = CircuitBreakerConfig::builder()
        .failure_threshold(1)
        .open_duration(Duration::from_secs(1))
        .open_duration_growth(2.0, Duration::from_secs(5))
        .build()
        .unwrap();
    let breaker = breaker(config);
    fail(&breaker, 1);

    for expected in [1, 2, 4, 5, 5] {
        let wait = breaker.try_acquire().unwrap_err().retry_after().unwrap();
        assert_eq!(wait, Duration::from_secs(expected));
        advance(wait).await;
        fail(&breaker, 1); // the probe fails: open again, for longer
    }
}

#[tokio::test(start_paused = true)]
async fn open_duration_starts_over_once_the_breaker_closes() {
    let config = CircuitBreakerConfig::builder()
        .failure_threshold(1)
        .success_threshold(1)
        .open_duration(Duration::from_secs(1))
        .open_duration_growth(3.0, Duration::from_secs(60))
        .build()
        .unwrap();
    let breaker = breaker(config);
    fail(&breaker, 1);
    advance(Duration::from_secs(1)).await;
    fail(&breaker, 1);
    assert_eq!(
        breaker.try_acquire().unwrap_err().retry_after(),
        Some(Duration::from_secs(3))
    );

    advance(Duration::from_secs(3)).await;
    succeed(&breaker, 1);
    fail(&breaker, 1);
    assert_eq!(
        breaker.try_acquire().unwrap_err().retry_after(),
        Some(Duration::from_secs(1))
    );
}

#[tokio::test(start_paused = true)]
async fn jittered_open_durations_stay_within_bounds_and_repeat_with_a_seed() {
    let config = CircuitBreakerConfig::builder()
        .failure_threshold(1)
        .open_duration(Duration::from_secs(10))
        .open_duration_jitter(0.5)
        .seed(7)
        .build()
        .unwrap();
    let waits = |config: &CircuitBreakerConfig| {
        let breaker = breaker(config.clone());
        let mut waits = Vec::new();
        for _ in 0..20 {
            breaker.reset();
            fail(&breaker, 1);
            waits.push(breaker.try_acquire().unwrap_err().retry_after().unwrap());
        }
        waits
    };
    let first = waits(&config);
    assert_eq!(first, waits(&config), "same seed, same durations");
    assert!(first
        .iter()
        .all(|w| *w >= Duration::from_secs(5) && *w <= Duration::from_secs(10)));
    assert!(
        first.iter().any(|w| *w < Duration::from_secs(9)),
        "jitter spreads: {first:?}"
    );
}

// ===== manual control =====

#[tokio::test(start_paused = true)]
async fn forced_open_rejects_until_reset_whatever_the_time() {
    let breaker = breaker(CircuitBreakerConfig::default());
    breaker.force_open();
    advance(Duration::from_secs(3_600)).await;
    let rejected = breaker.try_acquire().unwrap_err();
    assert_eq!(rejected.state(), CircuitState::ForcedOpen);
    assert_eq!(rejected.retry_after(), None);

    breaker.reset();
    assert_eq!(breaker.state(), CircuitState::Closed);
    assert!(breaker.try_acquire().is_ok());
}

#[tokio::test(start_paused = true)]
async fn forced_closed_admits_everything_and_never_trips() {
    let breaker = breaker(CircuitBreakerConfig::default());
    breaker.force_closed();
    fail(&breaker, 50);
    assert_eq!(breaker.state(), CircuitState::Disabled);
    assert_eq!(
        breaker.metrics().consecutive_failures,
        0,
        "disabled records nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn metrics_only_measures_rates_but_never_trips() {
    let config = CircuitBreakerConfig::builder()
        .sliding_window(SlidingWindow::count(10))
        .minimum_calls(5)
        .build()
        .unwrap();
    let breaker = breaker(config);
    breaker.metrics_only();
    fail(&breaker, 8);
    succeed(&breaker, 2);

    let metrics = breaker.metrics();
    assert_eq!(metrics.state, CircuitState::MetricsOnly);
    assert_eq!(metrics.failure_rate, Some(80.0));
    assert_eq!(metrics.calls_in_window, 10);
}

#[tokio::test(start_paused = true)]
async fn reset_clears_counts_and_an_open_state() {
    let breaker = breaker(CircuitBreakerConfig::default());
    fail(&breaker, 5);
    breaker.reset();
    assert_eq!(breaker.state(), CircuitState::Closed);
    fail(&breaker, 4);
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn listeners_see_manual_changes_with_their_reason() {
    let breaker = breaker(CircuitBreakerConfig::default());
    let reasons = Arc::new(Mutex::new(Vec::new()));
    let sink = reasons.clone();
    breaker.on_state_change(move |change| sink.lock().unwrap().push(change.reason));
    breaker.force_open();
    breaker.reset();
    assert_eq!(*reasons.lock().unwrap(), ["forced open", "reset"]);
}

#[tokio::test(start_paused = true)]
async fn a_listener_may_call_back_into_the_breaker() {
    let breaker = breaker(CircuitBreakerConfig::default());
    let inner = breaker.clone();
    breaker.on_state_change(move |change| {
        if change.to == CircuitState::ForcedOpen {
            inner.reset();
        }
    });
    breaker.force_open();
    assert_eq!(breaker.state(), CircuitState::Closed);
}

// ===== sliding windows =====

#[tokio::test(start_paused = true)]
async fn count_window_trips_on_failure_rate_once_minimum_calls_are_in() {
    let config = CircuitBreakerConfig::builder()
        .sliding_window(SlidingWindow::count(10))
        .failure_rate_threshold(50.0)
        .minimum_calls(6)
        .build()
        .unwrap();
    let breaker = breaker(config);
    fail(&breaker, 3);
    succeed(&breaker, 2);
    assert_eq!(
        breaker.state(),
        CircuitState::Closed,
        "5 calls are under the minimum"
    );
    succeed(&breaker, 1);
    assert_eq!(breaker.state(), CircuitState::Open, "3 of 6 failed: 50 %");
}

#[tokio::test(start_paused = true)]
async fn count_window_forgets_calls_older_than_its_size() {
    let config = CircuitBreakerConfig::builder()
        .sliding_window(SlidingWindow::count(4))
        .failure_rate_threshold(75.0)
        .minimum_calls(4)
        .build()
        .unwrap();
    let breaker = breaker(config);
    fail(&breaker, 2);
    succeed(&breaker, 2); // [F F S S]: 50 %
    fail(&breaker, 1); // [F S S F]: 50 %
    assert_eq!(breaker.state(), CircuitState::Closed);
    fail(&breaker, 1); // [S S F F]: 50 %
    fail(&breaker, 1); // [S F F F]: 75 %
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_window_alone_disables_the_consecutive_failure_trip() {
    let config = CircuitBreakerConfig::builder()
        .sliding_window(SlidingWindow::count(100))
        .minimum_calls(100)
        .build()
        .unwrap();
    let breaker = breaker(config);
    fail(&breaker, 50);
    assert_eq!(breaker.state(), CircuitState::Closed);
}

#[tokio::test(start_paused = true)]
async fn time_window_only_counts_recent_calls() {
    let config = CircuitBreakerConfig::builder()
        .sliding_window(SlidingWindow::Time {
            duration: Duration::from_secs(10),
            buckets: 10,
        })
        .failure_rate_threshold(50.0)
        .minimum_calls(4)
        .build()
        .unwrap();
    let breaker = breaker(config);
    fail(&breaker, 3);
    advance(Duration::from_secs(11)).await; // those failures slide out
    succeed(&breaker, 3);
    fail(&breaker, 1);
    assert_eq!(
        breaker.state(),
        CircuitState::Closed,
        "1 of 4 recent calls failed"
    );
    assert_eq!(breaker.metrics().failure_rate, Some(25.0));

    fail(&breaker, 2);
    assert_eq!(
        breaker.state(),
        CircuitState::Open,
        "3 of 6 recent calls failed"
    );
}

#[tokio::test(start_paused = true)]
async fn slow_calls_trip_on_the_slow_call_rate() {
    let config = CircuitBreakerConfig::builder()
        .sliding_window(SlidingWindow::count(10))
        .minimum_calls(4)
        .slow_call_duration(Duration::from_secs(2))
        .slow_call_rate_threshold(50.0)
        .build()
        .unwrap();
    let breaker = breaker(config);
    let record = |latency| {
        breaker
            .try_acquire()
            .unwrap()
            .record(Outcome::Success, latency)
    };
    record(Duration::from_secs(1));
    record(Duration::from_secs(3));
    record(Duration::from_millis(100));
    assert_eq!(breaker.state(), CircuitState::Closed);
    record(Duration::from_secs(2));
    assert_eq!(
        breaker.state(),
        CircuitState::Open,
        "2 of 4 calls were slow"
    );
    let metrics = breaker.metrics();
    assert_eq!(
        metrics.slow_calls_in_window, 2,
        "an open breaker shows the window that tripped it"
    );
    assert_eq!(metrics.slow_call_rate, Some(50.0));
}

#[tokio::test(start_paused = true)]
async fn a_slow_probe_counts_as_a_failed_one() {
    let config = CircuitBreakerConfig::builder()
        .sliding_window(SlidingWindow::count(10))
        .minimum_calls(1)
        .failure_rate_threshold(100.0)
        .slow_call_duration(Duration::from_secs(1))
        .build()
        .unwrap();
    let breaker = breaker(config);
    fail(&breaker, 1);
    advance(Duration::from_secs(30)).await;
    breaker
        .try_acquire()
        .unwrap()
        .record(Outcome::Success, Duration::from_secs(5));
    assert_eq!(breaker.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn metrics_report_time_in_state_rejections_and_trips() {
    let breaker = breaker(CircuitBreakerConfig::default());
    fail(&breaker, 5);
    advance(Duration::from_secs(12)).await;
    let _ = breaker.try_acquire();
    let _ = breaker.try_acquire();

    let metrics = breaker.metrics();
    assert_eq!(metrics.state, CircuitState::Open);
    assert_eq!(metrics.time_in_state, Duration::from_secs(12));
    assert_eq!(metrics.rejected_calls, 2);
    assert_eq!(metrics.times_opened, 1);
    assert_eq!(metrics.failure_rate, None, "no window configured");
}
