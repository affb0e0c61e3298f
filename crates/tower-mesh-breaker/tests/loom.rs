//! Loom models of the breaker's races: every interleaving of a few threads that
//! admit, record and change state at once, up to a bound on preemptions.
//!
//! Run with:
//!
//! ```text
//! RUSTFLAGS="--cfg tower_mesh_loom" cargo test -p tower-mesh-breaker --test loom --release
//! ```
//!
//! Each model sets its breaker up on one thread first, on tokio's paused clock, so
//! that reaching half-open needs no real time to pass. The threads that race
//! afterwards never depend on the clock: the open duration is an hour (a reopened
//! breaker stays open for the whole model) and half-open has no time limit. Loom
//! needs that: a thread whose steps depended on the real time could take a
//! different path each time loom replays the same interleaving.
#![cfg(tower_mesh_loom)]

use std::time::Duration;

use loom::sync::{Arc, Mutex};
use loom::thread;
use tower_mesh_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerConfigBuilder, CircuitState, Permit,
};

const OPEN_FOR: Duration = Duration::from_secs(3_600);

/// Explores `model` with at most three preemptions per interleaving, unless
/// `LOOM_MAX_PREEMPTIONS` says otherwise.
fn explore(model: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound.get_or_insert(3);
    builder.check(model);
}

/// One consecutive failure trips; an hour open; no limit on time in half-open.
fn config() -> CircuitBreakerConfigBuilder {
    CircuitBreakerConfig::builder()
        .failure_threshold(1)
        .open_duration(OPEN_FOR)
        .max_half_open_wait(None)
}

/// A breaker that tripped once and is now half-open with no probe in flight.
fn half_open(config: CircuitBreakerConfig) -> CircuitBreaker {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a paused current-thread runtime");
    runtime.block_on(async {
        let breaker = CircuitBreaker::new("loom", config);
        breaker
            .try_acquire()
            .expect("a closed breaker admits")
            .failure();
        tokio::time::advance(OPEN_FOR).await;
        drop(breaker.try_acquire().expect("the first probe is admitted"));
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        assert_eq!(breaker.metrics().half_open_probes, 0);
        breaker
    })
}

/// Every state change from now on, as `(from, to)`, in the order announced.
fn journal(breaker: &CircuitBreaker) -> Arc<Mutex<Vec<(CircuitState, CircuitState)>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    breaker.on_state_change(move |change| sink.lock().unwrap().push((change.from, change.to)));
    seen
}

fn count(
    journal: &Mutex<Vec<(CircuitState, CircuitState)>>,
    matches: impl Fn(CircuitState, CircuitState) -> bool,
) -> usize {
    let changes = journal.lock().unwrap();
    changes
        .iter()
        .filter(|&&(from, to)| matches(from, to))
        .count()
}

fn acquire(breaker: &CircuitBreaker) -> Permit {
    breaker.try_acquire().expect("admitted")
}

// ===== half-open admission =====

fn half_open_admits_at_most(max_calls: u32) {
    explore(move || {
        let config = config().half_open_max_calls(max_calls).build().unwrap();
        let breaker = half_open(config);

        // Three callers race for the probe slots and keep what they get.
        let callers: Vec<_> = (0..3)
            .map(|_| {
                let breaker = breaker.clone();
                thread::spawn(move || breaker.try_acquire().ok())
            })
            .collect();
        let probes: Vec<Permit> = callers
            .into_iter()
            .filter_map(|caller| caller.join().unwrap())
            .collect();

        // Nobody gave a slot back, so exactly the limit got one: no more, and no
        // slot was lost to a failed compare-and-swap.
        assert_eq!(probes.len(), max_calls as usize);
        let metrics = breaker.metrics();
        assert_eq!(metrics.half_open_probes, max_calls);
        assert_eq!(metrics.rejected_calls, 3 - u64::from(max_calls));

        drop(probes);
        assert_eq!(breaker.metrics().half_open_probes, 0);
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
    });
}

#[test]
fn half_open_admits_a_single_probe_among_racing_callers() {
    half_open_admits_at_most(1);
}

#[test]
fn half_open_admits_exactly_half_open_max_calls_among_racing_callers() {
    half_open_admits_at_most(2);
}

// ===== probes racing a state change =====

/// Two probes are in flight; one succeeds (enough to close) while `leave` ends the
/// half-open state another way, and a third caller tries for a slot meanwhile.
fn probe_races_a_state_change(leave: fn(Permit, &CircuitBreaker)) {
    explore(move || {
        let config = config()
            .half_open_max_calls(2)
            .success_threshold(1)
            .build()
            .unwrap();
        let breaker = half_open(config);
        let first = acquire(&breaker);
        let second = acquire(&breaker);
        let changes = journal(&breaker);

        let succeeding = thread::spawn(move || first.success());
        let other = breaker.clone();
        let leaving = thread::spawn(move || leave(second, &other));
        let other = breaker.clone();
        let caller = thread::spawn(move || drop(other.try_acquire()));
        for racer in [succeeding, leaving, caller] {
            racer.join().unwrap();
        }

        // Half-open ended exactly once, whichever thread ended it, and no probe
        // is counted in the state that followed.
        assert_eq!(count(&changes, |from, _| from == CircuitState::HalfOpen), 1);
        let metrics = breaker.metrics();
        assert_ne!(metrics.state, CircuitState::HalfOpen);
        assert_eq!(metrics.half_open_probes, 0);

        // Every opening is counted once: the setup's trip plus any seen here.
        let reopened = count(&changes, |_, to| to == CircuitState::Open);
        assert_eq!(metrics.times_opened, 1 + reopened as u64);
    });
}

#[test]
fn a_probe_success_racing_a_probe_failure_ends_half_open_once_and_counts_no_probe() {
    probe_races_a_state_change(|probe, _| probe.failure());
}

#[test]
fn a_probe_success_racing_force_open_ends_half_open_once_and_counts_no_probe() {
    probe_races_a_state_change(|probe, breaker| {
        breaker.force_open();
        probe.success();
    });
}

#[test]
fn probe_slots_given_back_while_others_acquire_are_never_lost() {
    explore(|| {
        let config = config()
            .half_open_max_calls(2)
            .success_threshold(3)
            .build()
            .unwrap();
        let breaker = half_open(config);
        let first = acquire(&breaker);
        let second = acquire(&breaker);

        // One probe is cancelled, one succeeds (not enough to close), and a
        // caller races them for a slot and keeps it.
        let cancelled = thread::spawn(move || drop(first));
        let succeeding = thread::spawn(move || second.success());
        let other = breaker.clone();
        let caller = thread::spawn(move || other.try_acquire().ok());
        cancelled.join().unwrap();
        succeeding.join().unwrap();
        let kept = caller.join().unwrap();

        let held = u32::from(kept.is_some());
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        assert_eq!(breaker.metrics().half_open_probes, held);

        // With every permit gone, both slots are free again.
        drop(kept);
        let probes = [acquire(&breaker), acquire(&breaker)];
        assert!(breaker.try_acquire().is_err());
        drop(probes);
        assert_eq!(breaker.metrics().half_open_probes, 0);
    });
}

// ===== closed-state recorders =====

/// Three calls admitted while closed finish at once, with `outcomes[i]` true for
/// a failure; two consecutive failures trip.
fn closed_recorders_race(outcomes: [bool; 3]) {
    explore(move || {
        let config = config().failure_threshold(2).build().unwrap();
        let breaker = CircuitBreaker::new("loom", config);
        let changes = journal(&breaker);

        let recorders: Vec<_> = outcomes
            .into_iter()
            .map(|failure| {
                let permit = acquire(&breaker);
                thread::spawn(move || {
                    if failure {
                        permit.failure();
                    } else {
                        permit.success();
                    }
                })
            })
            .collect();
        for recorder in recorders {
            recorder.join().unwrap();
        }

        // Every call was admitted under the same closed generation, which can be
        // left only once.
        let trips = count(&changes, |from, to| {
            (from, to) == (CircuitState::Closed, CircuitState::Open)
        });
        let failures = outcomes.iter().filter(|&&failure| failure).count();
        let metrics = breaker.metrics();
        assert!(trips <= 1, "tripped {trips} times");
        if failures == 3 {
            assert_eq!(trips, 1, "three failures must trip a threshold of two");
        }
        assert_eq!(metrics.times_opened, trips as u64);
        let expected = if trips == 1 {
            CircuitState::Open
        } else {
            CircuitState::Closed
        };
        assert_eq!(metrics.state, expected);
    });
}

#[test]
fn racing_failures_trip_a_closed_breaker_exactly_once() {
    closed_recorders_race([true, true, true]);
}

#[test]
fn racing_successes_and_failures_trip_a_closed_breaker_at_most_once() {
    closed_recorders_race([true, false, true]);
}

// The streak is tagged with the generation it counts for, so a failure admitted
// before a reset finds a stale tag if the reset lands between its epoch check and
// its count.
#[test]
fn a_failure_admitted_before_a_reset_is_not_counted_after_it() {
    explore(|| {
        let config = config().failure_threshold(2).build().unwrap();
        let breaker = CircuitBreaker::new("loom", config);
        let before_reset = acquire(&breaker);

        let failing = thread::spawn(move || before_reset.failure());
        let other = breaker.clone();
        let resetting = thread::spawn(move || other.reset());
        failing.join().unwrap();
        resetting.join().unwrap();

        // Whether the failure landed before the reset (and was cleared) or after
        // it (and was stale), the new closed generation starts with no failures.
        assert_eq!(breaker.state(), CircuitState::Closed);
        assert_eq!(breaker.metrics().consecutive_failures, 0);
    });
}
