//! Model tests: the breaker and a small reference model are driven by the same
//! random operations and must agree after every step.
//!
//! The reference model is written to be obviously right rather than fast: plain
//! fields, one method per operation, no atomics, no packing. Each case runs on
//! tokio's paused clock, so the passing of time is one more operation and every
//! boundary (exactly `open_duration` after a trip, say) is reached exactly.
//!
//! What is compared after every step: the state, whether an acquire was admitted,
//! the probes in flight, the consecutive failures, the times opened, the rejected
//! calls, the time spent in the state and the sliding window's counts.

use std::collections::VecDeque;
use std::time::Duration;

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::Index;
use tower_mesh_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitState, Permit, SlidingWindow,
};
use tower_mesh_core::Outcome;

// ===== settings =====

/// The configuration of one case, in the terms the reference model needs.
#[derive(Debug, Clone, Copy)]
struct Settings {
    failure_threshold: Option<u32>,
    success_threshold: u32,
    half_open_max_calls: u32,
    open_duration: Duration,
    max_half_open_wait: Option<Duration>,
    /// Growth multiplier and longest open duration, when open durations grow.
    open_growth: Option<(u32, Duration)>,
    window: Option<WindowSettings>,
}

#[derive(Debug, Clone, Copy)]
struct WindowSettings {
    size: u32,
    minimum_calls: u32,
    failure_rate_percent: u32,
}

impl Settings {
    fn config(&self) -> CircuitBreakerConfig {
        let mut builder = CircuitBreakerConfig::builder()
            .success_threshold(self.success_threshold)
            .half_open_max_calls(self.half_open_max_calls)
            .open_duration(self.open_duration)
            .max_half_open_wait(self.max_half_open_wait);
        builder = match self.failure_threshold {
            Some(failures) => builder.failure_threshold(failures),
            None => builder.without_failure_threshold(),
        };
        if let Some((multiplier, max)) = self.open_growth {
            builder = builder.open_duration_growth(f64::from(multiplier), max);
        }
        if let Some(window) = self.window {
            builder = builder
                .sliding_window(SlidingWindow::count(window.size))
                .minimum_calls(window.minimum_calls)
                .failure_rate_threshold(f64::from(window.failure_rate_percent));
        }
        builder
            .build()
            .expect("the strategies only make valid configurations")
    }
}

// ===== the reference model =====

/// What the model remembers about an admitted call.
#[derive(Debug, Clone, Copy)]
struct Ticket {
    generation: u64,
    probe: bool,
}

/// The breaker's rules, one plain field per fact.
#[derive(Debug)]
struct Model {
    settings: Settings,
    now: Duration,
    state: CircuitState,
    /// Bumped by every state change, so that late outcomes can be told apart.
    generation: u64,
    state_since: Duration,
    open_until: Duration,
    /// Trips since the breaker last closed or was set by hand.
    trips: u32,
    consecutive_failures: u64,
    probes: u32,
    successes: u32,
    /// The last calls recorded, `true` for a failure, oldest first.
    window: VecDeque<bool>,
    times_opened: u64,
    rejected: u64,
}

impl Model {
    fn new(settings: Settings) -> Model {
        Model {
            settings,
            now: Duration::ZERO,
            state: CircuitState::Closed,
            generation: 0,
            state_since: Duration::ZERO,
            open_until: Duration::ZERO,
            trips: 0,
            consecutive_failures: 0,
            probes: 0,
            successes: 0,
            window: VecDeque::new(),
            times_opened: 0,
            rejected: 0,
        }
    }

    fn acquire(&mut self) -> Option<Ticket> {
        if self.state == CircuitState::Open && self.now >= self.open_until {
            self.enter(CircuitState::HalfOpen);
        }
        if self.state == CircuitState::HalfOpen && self.half_open_for_too_long() {
            self.enter(CircuitState::Open);
        }
        let admitted = match self.state {
            CircuitState::Closed | CircuitState::Disabled | CircuitState::MetricsOnly => true,
            CircuitState::HalfOpen => self.probes < self.settings.half_open_max_calls,
            CircuitState::Open | CircuitState::ForcedOpen => false,
        };
        if !admitted {
            self.rejected += 1;
            return None;
        }
        let probe = self.state == CircuitState::HalfOpen;
        if probe {
            self.probes += 1;
        }
        Some(Ticket {
            generation: self.generation,
            probe,
        })
    }

    fn half_open_for_too_long(&self) -> bool {
        let waited = self.now - self.state_since;
        self.settings
            .max_half_open_wait
            .is_some_and(|max| waited >= max)
    }

    fn settle(&mut self, ticket: Ticket, outcome: Outcome) {
        if ticket.generation != self.generation {
            // Admitted under a state that has ended: the outcome is stale.
            return;
        }
        if ticket.probe {
            self.settle_probe(outcome);
        } else {
            self.settle_call(outcome);
        }
    }

    fn settle_probe(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Failure => self.enter(CircuitState::Open),
            Outcome::Success => {
                self.probes -= 1;
                self.successes += 1;
                if self.successes >= self.settings.success_threshold {
                    self.enter(CircuitState::Closed);
                }
            }
            Outcome::Ignored => self.probes -= 1,
        }
    }

    fn settle_call(&mut self, outcome: Outcome) {
        if outcome == Outcome::Ignored || self.state == CircuitState::Disabled {
            return;
        }
        let failure = outcome == Outcome::Failure;
        let streak_trips = self.count_streak(failure);
        let rate_trips = self.count_in_window(failure);
        if self.state == CircuitState::Closed && (streak_trips || rate_trips) {
            self.enter(CircuitState::Open);
        }
    }

    fn count_streak(&mut self, failure: bool) -> bool {
        let Some(threshold) = self.settings.failure_threshold else {
            return false;
        };
        if failure {
            self.consecutive_failures += 1;
        } else {
            self.consecutive_failures = 0;
        }
        self.consecutive_failures >= u64::from(threshold)
    }

    fn count_in_window(&mut self, failure: bool) -> bool {
        let Some(window) = self.settings.window else {
            return false;
        };
        self.window.push_back(failure);
        if self.window.len() > window.size as usize {
            self.window.pop_front();
        }
        let (calls, failures) = self.window_counts();
        calls >= window.minimum_calls && failures * 100 >= window.failure_rate_percent * calls
    }

    fn window_counts(&self) -> (u32, u32) {
        let failures = self.window.iter().filter(|&&failure| failure).count();
        (self.window.len() as u32, failures as u32)
    }

    /// Every state change, automatic or by hand, starts a new generation.
    fn enter(&mut self, to: CircuitState) {
        self.state = to;
        self.generation += 1;
        self.state_since = self.now;
        self.probes = 0;
        self.successes = 0;
        match to {
            CircuitState::Open => {
                self.trips += 1;
                self.open_until = self.now + self.open_duration_for_trip();
                self.times_opened += 1;
            }
            CircuitState::HalfOpen => {}
            CircuitState::Closed | CircuitState::MetricsOnly => {
                self.trips = 0;
                self.consecutive_failures = 0;
                self.window.clear();
            }
            CircuitState::ForcedOpen | CircuitState::Disabled => self.trips = 0,
        }
    }

    fn open_duration_for_trip(&self) -> Duration {
        let mut duration = self.settings.open_duration;
        if let Some((multiplier, max)) = self.settings.open_growth {
            for _ in 1..self.trips {
                duration = (duration * multiplier).min(max);
            }
        }
        duration
    }
}

// ===== operations =====

#[derive(Debug, Clone, Copy)]
enum Op {
    Acquire,
    /// Finishes one of the held permits, picked by the index.
    Finish(Index, Finish),
    Advance(Duration),
    ForceOpen,
    ForceClosed,
    MetricsOnly,
    Reset,
}

#[derive(Debug, Clone, Copy)]
enum Finish {
    Success,
    Failure,
    Ignored,
    Drop,
}

impl Finish {
    /// What the breaker sees: a dropped permit counts as an ignored call.
    fn outcome(self) -> Outcome {
        match self {
            Finish::Success => Outcome::Success,
            Finish::Failure => Outcome::Failure,
            Finish::Ignored | Finish::Drop => Outcome::Ignored,
        }
    }

    fn apply(self, permit: Permit) {
        match self {
            Finish::Success => permit.success(),
            Finish::Failure => permit.failure(),
            Finish::Ignored => permit.record(Outcome::Ignored, Duration::ZERO),
            Finish::Drop => drop(permit),
        }
    }
}

/// One case's run: the breaker, the model, and the permits both hold.
struct Run {
    breaker: CircuitBreaker,
    model: Model,
    held: Vec<(Permit, Ticket)>,
}

impl Run {
    fn new(settings: Settings) -> Run {
        Run {
            breaker: CircuitBreaker::new("model", settings.config()),
            model: Model::new(settings),
            held: Vec::new(),
        }
    }

    async fn apply(&mut self, op: Op) -> Result<(), TestCaseError> {
        match op {
            Op::Acquire => {
                let real = self.breaker.try_acquire();
                let expected = self.model.acquire();
                prop_assert_eq!(real.is_ok(), expected.is_some(), "admission differs");
                if let (Ok(permit), Some(ticket)) = (real, expected) {
                    self.held.push((permit, ticket));
                }
            }
            Op::Finish(index, finish) => {
                if !self.held.is_empty() {
                    let (permit, ticket) = self.held.swap_remove(index.index(self.held.len()));
                    finish.apply(permit);
                    self.model.settle(ticket, finish.outcome());
                }
            }
            Op::Advance(duration) => {
                tokio::time::advance(duration).await;
                self.model.now += duration;
            }
            Op::ForceOpen => self.by_hand(CircuitBreaker::force_open, CircuitState::ForcedOpen),
            Op::ForceClosed => self.by_hand(CircuitBreaker::force_closed, CircuitState::Disabled),
            Op::MetricsOnly => {
                self.by_hand(CircuitBreaker::metrics_only, CircuitState::MetricsOnly);
            }
            Op::Reset => self.by_hand(CircuitBreaker::reset, CircuitState::Closed),
        }
        Ok(())
    }

    fn by_hand(&mut self, set: fn(&CircuitBreaker), state: CircuitState) {
        set(&self.breaker);
        self.model.enter(state);
    }

    /// Lets go of every permit still held, as a cancelled caller would.
    fn drop_all(&mut self) {
        for (permit, ticket) in self.held.drain(..) {
            drop(permit);
            self.model.settle(ticket, Outcome::Ignored);
        }
    }

    fn agree(&self) -> Result<(), TestCaseError> {
        let model = &self.model;
        let metrics = self.breaker.metrics();
        prop_assert_eq!(self.breaker.state(), model.state, "state differs");
        prop_assert_eq!(metrics.half_open_probes, model.probes, "probes differ");
        prop_assert_eq!(
            metrics.consecutive_failures,
            model.consecutive_failures,
            "consecutive failures differ"
        );
        prop_assert_eq!(
            metrics.times_opened,
            model.times_opened,
            "times opened differ"
        );
        prop_assert_eq!(metrics.rejected_calls, model.rejected, "rejections differ");
        prop_assert_eq!(
            metrics.time_in_state,
            model.now - model.state_since,
            "time in state differs"
        );
        prop_assert_eq!(
            (metrics.calls_in_window, metrics.failures_in_window),
            model.window_counts(),
            "window counts differ"
        );
        Ok(())
    }
}

/// Runs `ops` against a fresh breaker and model on a paused clock, comparing the
/// two after every step and once more after every remaining permit is dropped.
fn check(settings: Settings, ops: &[Op]) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a paused current-thread runtime");
    runtime.block_on(async {
        // Created inside the runtime, so the breaker's clock starts on the paused one.
        let mut run = Run::new(settings);
        for (step, &op) in ops.iter().enumerate() {
            let checked = match run.apply(op).await {
                Ok(()) => run.agree(),
                Err(error) => Err(error),
            };
            checked.map_err(|error| {
                TestCaseError::fail(format!("step {step} ({op:?}): {error}\n{:#?}", run.model))
            })?;
        }
        run.drop_all();
        run.agree()
            .map_err(|error| TestCaseError::fail(format!("after dropping every permit: {error}")))
    })
}

// ===== strategies =====

/// Mostly calls and time; the manual states are rare, since each one wipes out
/// whatever automatic state the case had built up.
fn op() -> impl Strategy<Value = Op> {
    let finish = prop_oneof![
        2 => Just(Finish::Success),
        3 => Just(Finish::Failure),
        1 => Just(Finish::Ignored),
        1 => Just(Finish::Drop),
    ];
    // Whole seconds land exactly on the (whole-second) open durations and waits;
    // milliseconds land in between.
    let advance = prop_oneof![
        (0u64..=12).prop_map(Duration::from_secs),
        (1u64..2_000).prop_map(Duration::from_millis),
    ];
    let by_hand = prop_oneof![
        Just(Op::ForceOpen),
        Just(Op::ForceClosed),
        Just(Op::MetricsOnly),
        Just(Op::Reset),
    ];
    prop_oneof![
        10 => Just(Op::Acquire),
        10 => (any::<Index>(), finish).prop_map(|(index, finish)| Op::Finish(index, finish)),
        4 => advance.prop_map(Op::Advance),
        1 => by_hand,
    ]
}

/// Small thresholds and whole-second durations, so every path is reached often.
fn settings(
    failure_threshold: impl Strategy<Value = Option<u32>>,
    window: impl Strategy<Value = Option<WindowSettings>>,
) -> impl Strategy<Value = Settings> {
    (
        failure_threshold,
        1u32..=3,
        1u32..=3,
        1u64..=10,
        option::of(1u64..=10),
        option::of((2u32..=3, 0u64..=30)),
        window,
    )
        .prop_map(
            |(failure_threshold, success, max_calls, open_secs, wait_secs, growth, window)| {
                let open_duration = Duration::from_secs(open_secs);
                Settings {
                    failure_threshold,
                    success_threshold: success,
                    half_open_max_calls: max_calls,
                    open_duration,
                    max_half_open_wait: wait_secs.map(Duration::from_secs),
                    // The longest open duration is counted from the first one.
                    open_growth: growth.map(|(multiplier, extra_secs)| {
                        (multiplier, open_duration + Duration::from_secs(extra_secs))
                    }),
                    window,
                }
            },
        )
}

fn count_window() -> impl Strategy<Value = WindowSettings> {
    (1u32..=6)
        .prop_flat_map(|size| (Just(size), 1..=size, 1u32..=100))
        .prop_map(
            |(size, minimum_calls, failure_rate_percent)| WindowSettings {
                size,
                minimum_calls,
                failure_rate_percent,
            },
        )
}

// ===== properties =====

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn breaker_tripped_by_consecutive_failures_matches_the_reference_model_at_every_step(
        settings in settings((1u32..=5).prop_map(Some), Just(None)),
        ops in vec(op(), 1..100),
    ) {
        check(settings, &ops)?;
    }

    #[test]
    fn breaker_tripped_by_a_count_window_matches_the_reference_model_at_every_step(
        settings in settings(option::of(1u32..=5), count_window().prop_map(Some)),
        ops in vec(op(), 1..100),
    ) {
        check(settings, &ops)?;
    }
}
