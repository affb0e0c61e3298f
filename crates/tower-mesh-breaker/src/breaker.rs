//! [`CircuitBreaker`]: the shared state, admission and recording.

use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::sync::Arc as NameArc;
use std::time::Duration;

use tokio::time::Instant;
use tower_mesh_core::{Classify, ErrorsAsFailures, Outcome};

use crate::config::CircuitBreakerConfig;
use crate::error::{CircuitError, CircuitOpenError};
use crate::permit::Permit;
use crate::state::{CircuitState, Word};
use crate::streak::Streak;
use crate::sync::{lock, Arc, AtomicU64, Mutex, Ordering};
use crate::transition::{Control, Listeners, StateTransition};
use crate::window::{Counts, Sample, Window};

/// A circuit breaker: shared, cloneable state that decides whether calls may run.
///
/// Every clone refers to the same breaker. Calls ask for admission
/// ([`try_acquire`](Self::try_acquire) or [`can_execute`](Self::can_execute)),
/// run, and report how they went; the breaker opens when failures pile up, rejects
/// calls while open, then lets a few probes through (half-open) to decide whether
/// to close again.
///
/// # Cost
///
/// Admitting a call in the closed state is one atomic load; recording a success
/// is one more, and a failure one `fetch_add`. Nothing allocates and no call waits
/// on a lock: the lock is taken only to change state. Windows and slow-call
/// tracking add a few atomic operations and, for slow calls, two clock reads.
///
/// # Example
///
/// ```
/// use tower_mesh_breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitState};
///
/// let breaker = CircuitBreaker::new("inventory", CircuitBreakerConfig::default());
/// for _ in 0..5 {
///     assert!(breaker.can_execute());
///     breaker.record_failure();
/// }
/// assert_eq!(breaker.state(), CircuitState::Open);
/// assert!(!breaker.can_execute());
/// ```
#[derive(Clone)]
pub struct CircuitBreaker {
    shared: Handle,
}

/// How a [`CircuitBreaker`] reaches its state: counted, or living for the rest of
/// the program (see [`CircuitBreaker::leak`]), in which case a clone is a copy.
#[derive(Clone)]
enum Handle {
    Counted(Arc<Shared>),
    Static(&'static Shared),
}

impl Deref for Handle {
    type Target = Shared;

    #[inline]
    fn deref(&self) -> &Shared {
        match self {
            Handle::Counted(shared) => shared,
            Handle::Static(shared) => shared,
        }
    }
}

struct Shared {
    hot: Hot,
    name: NameArc<str>,
    config: CircuitBreakerConfig,
    window: Option<Window>,
    origin: Instant,
    control: Mutex<Control>,
    listeners: Listeners,
    rejected: AtomicU64,
    times_opened: AtomicU64,
}

/// The fields every call touches, on their own cache lines, away from the `Arc`'s
/// reference counts, so that readers on several cores do not contend with clones.
#[repr(align(128))]
struct Hot {
    word: AtomicU64,
    consecutive_failures: Streak,
    /// Nanoseconds since `origin` at which an open breaker may probe again.
    open_until: AtomicU64,
    /// Nanoseconds since `origin` at which the current state began.
    state_since: AtomicU64,
}

/// A snapshot of a breaker's state and counts. See [`CircuitBreaker::metrics`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CircuitMetrics {
    /// The state when the snapshot was taken.
    pub state: CircuitState,
    /// How long the breaker has been in that state.
    pub time_in_state: Duration,
    /// Calls in the sliding window (0 without one).
    pub calls_in_window: u32,
    /// Failed calls in the sliding window.
    pub failures_in_window: u32,
    /// Slow calls in the sliding window.
    pub slow_calls_in_window: u32,
    /// Failure rate of the window in percent, once it holds a call.
    pub failure_rate: Option<f64>,
    /// Slow-call rate of the window in percent, once it holds a call.
    pub slow_call_rate: Option<f64>,
    /// Failures in a row since the last success.
    pub consecutive_failures: u64,
    /// Probes in flight (half-open only).
    pub half_open_probes: u32,
    /// Calls rejected since the breaker was created.
    pub rejected_calls: u64,
    /// Times the breaker opened since it was created.
    pub times_opened: u64,
}

impl CircuitBreaker {
    /// Creates a closed breaker. `name` appears in errors, logs and metrics.
    pub fn new(name: impl Into<NameArc<str>>, config: CircuitBreakerConfig) -> Self {
        let name = name.into();
        let seed = config
            .seed
            .unwrap_or_else(|| crate::transition::seed_from(&name));
        let shared = Shared {
            hot: Hot {
                word: AtomicU64::new(Word::new(CircuitState::Closed, 0).0),
                consecutive_failures: Streak::new(),
                open_until: AtomicU64::new(0),
                state_since: AtomicU64::new(0),
            },
            window: config.window.map(Window::new),
            name,
            config,
            origin: Instant::now(),
            control: Mutex::new(Control::new(seed)),
            listeners: Listeners::new(),
            rejected: AtomicU64::new(0),
            times_opened: AtomicU64::new(0),
        };
        CircuitBreaker {
            shared: Handle::Counted(Arc::new(shared)),
        }
    }

    /// Keeps this breaker for the rest of the program, and returns a handle to it
    /// whose clones skip reference counting.
    ///
    /// Every clone of a breaker, and every call in flight, holds a counted
    /// reference to its state; taking and dropping one is two atomic
    /// read-modify-writes per call, on a cache line that every core calling the
    /// breaker shares. A breaker that lives as long as the process (a service-wide
    /// breaker made at start-up) can do without: the handle this returns is a
    /// plain reference, so a closed-state call through it only reads shared memory.
    /// Its state is never freed, so do not leak breakers made per request or per
    /// instance.
    ///
    /// The returned handle and the existing clones remain the same breaker.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_mesh_breaker::{CircuitBreaker, CircuitBreakerConfig};
    ///
    /// let breaker = CircuitBreaker::new("payments", CircuitBreakerConfig::default());
    /// let forever = breaker.clone().leak();
    /// forever.force_open();
    /// assert!(!breaker.can_execute(), "both handles are the same breaker");
    /// ```
    pub fn leak(self) -> CircuitBreaker {
        let shared: &'static Shared = match self.shared {
            Handle::Static(shared) => shared,
            Handle::Counted(counted) => Box::leak(Box::new(counted)),
        };
        CircuitBreaker {
            shared: Handle::Static(shared),
        }
    }

    /// The name given at creation.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The configuration the breaker runs with.
    pub fn config(&self) -> &CircuitBreakerConfig {
        &self.shared.config
    }

    /// The current state.
    ///
    /// An open breaker whose open duration has passed reports `Open` until a call
    /// arrives to probe it: the move to half-open happens on admission.
    pub fn state(&self) -> CircuitState {
        self.word().state()
    }

    /// Asks to run one call, and returns the [`Permit`] that records its outcome.
    ///
    /// Admission is decided here, once: a closed breaker admits at once; an open
    /// one rejects until its open duration passes, then moves to half-open; a
    /// half-open one admits while fewer than
    /// [`half_open_max_calls`](CircuitBreakerConfig::half_open_max_calls) probes are
    /// in flight. The permit records exactly one outcome, and a permit dropped
    /// without one frees its probe slot and counts nothing.
    ///
    /// # Errors
    ///
    /// [`CircuitOpenError`] when the call may not run now.
    #[inline]
    pub fn try_acquire(&self) -> Result<Permit, CircuitOpenError> {
        let word = self.word();
        if word.state().admits_freely() {
            return Ok(Permit::new(self.clone(), word, false));
        }
        self.try_acquire_slow()
    }

    /// The word a call is admitted under when the state admits every call without
    /// bookkeeping (closed, disabled, metrics only); `None` otherwise.
    #[inline]
    pub(crate) fn free_admission(&self) -> Option<Word> {
        let word = self.word();
        word.state().admits_freely().then_some(word)
    }

    /// Admission in the states that may reject: open, half-open, forced open.
    #[cold]
    #[inline(never)]
    fn try_acquire_slow(&self) -> Result<Permit, CircuitOpenError> {
        loop {
            let word = self.word();
            match word.state() {
                CircuitState::Closed | CircuitState::Disabled | CircuitState::MetricsOnly => {
                    return Ok(Permit::new(self.clone(), word, false));
                }
                CircuitState::Open => self.admit_open(word)?,
                CircuitState::HalfOpen => {
                    if let Some(permit) = self.admit_half_open(word)? {
                        return Ok(permit);
                    }
                }
                CircuitState::ForcedOpen => return Err(self.reject(word.state(), None)),
            }
        }
    }

    /// Whether a call may run now, in the style of the classic API.
    ///
    /// A `true` answer admits the call: in half-open it takes a probe slot, which
    /// the next [`record_success`](Self::record_success) or
    /// [`record_failure`](Self::record_failure) gives back. Prefer
    /// [`try_acquire`](Self::try_acquire), whose permit cannot forget to report.
    pub fn can_execute(&self) -> bool {
        match self.try_acquire() {
            Ok(permit) => {
                permit.detach();
                true
            }
            Err(_) => false,
        }
    }

    /// Records a successful call admitted by [`can_execute`](Self::can_execute).
    pub fn record_success(&self) {
        self.record(Outcome::Success, Duration::ZERO);
    }

    /// Records a failed call admitted by [`can_execute`](Self::can_execute).
    pub fn record_failure(&self) {
        self.record(Outcome::Failure, Duration::ZERO);
    }

    /// Records a call admitted by [`can_execute`](Self::can_execute), with its
    /// latency, which counts towards the slow-call rate when that is tracked.
    pub fn record(&self, outcome: Outcome, latency: Duration) {
        let word = self.word();
        let probe = word.state() == CircuitState::HalfOpen;
        self.on_outcome(word, probe, outcome, latency);
    }

    /// Runs `call` if the breaker admits it, and records its outcome: every `Err`
    /// is a failure.
    ///
    /// # Errors
    ///
    /// [`CircuitError::Open`] if the breaker rejected the call (which is then
    /// never polled), or [`CircuitError::Inner`] with the call's own error.
    ///
    /// # Cancel safety
    ///
    /// Dropping the returned future before it finishes records nothing and frees
    /// the call's probe slot, if it held one.
    ///
    /// # Example
    ///
    /// ```
    /// use tower_mesh_breaker::{CircuitBreaker, CircuitBreakerConfig};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let breaker = CircuitBreaker::new("pricing", CircuitBreakerConfig::default());
    /// let price = breaker.execute(async { Ok::<_, std::io::Error>(42) }).await;
    /// assert_eq!(price.unwrap(), 42);
    /// # }
    /// ```
    pub async fn execute<T, E, Fut>(&self, call: Fut) -> Result<T, CircuitError<E>>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        self.execute_classified(ErrorsAsFailures, call).await
    }

    /// Like [`execute`](Self::execute), with `classifier` deciding what counts as
    /// a failure.
    ///
    /// # Errors
    ///
    /// As for [`execute`](Self::execute).
    pub async fn execute_classified<T, E, Fut, C>(
        &self,
        classifier: C,
        call: Fut,
    ) -> Result<T, CircuitError<E>>
    where
        Fut: Future<Output = Result<T, E>>,
        C: Classify<T, E>,
    {
        let permit = self.try_acquire().map_err(CircuitError::Open)?;
        self.run_admitted(permit, classifier, call)
            .await
            .map_err(CircuitError::Inner)
    }

    /// Runs an admitted call and records its outcome through `permit`.
    pub(crate) async fn run_admitted<T, E, Fut, C>(
        &self,
        permit: Permit,
        classifier: C,
        call: Fut,
    ) -> Result<T, E>
    where
        Fut: Future<Output = Result<T, E>>,
        C: Classify<T, E>,
    {
        let started = self.needs_latency(&classifier).then(Instant::now);
        let result = call.await;
        let latency = started.map_or(Duration::ZERO, |started| started.elapsed());
        permit.record(classifier.classify(result.as_ref(), latency), latency);
        result
    }

    /// A snapshot of the breaker's state and counts.
    pub fn metrics(&self) -> CircuitMetrics {
        let word = self.word();
        let now = self.now_nanos();
        let counts = self
            .shared
            .window
            .as_ref()
            .map_or(Counts::default(), |w| w.counts(now));
        let since = self.shared.hot.state_since.load(Ordering::Acquire);
        CircuitMetrics {
            state: word.state(),
            time_in_state: Duration::from_nanos(now.saturating_sub(since)),
            calls_in_window: counts.calls,
            failures_in_window: counts.failures,
            slow_calls_in_window: counts.slow,
            failure_rate: counts.failure_rate(),
            slow_call_rate: counts.slow_rate(),
            consecutive_failures: self.shared.hot.consecutive_failures.count(),
            half_open_probes: word.probes(),
            rejected_calls: self.shared.rejected.load(Ordering::Relaxed),
            times_opened: self.shared.times_opened.load(Ordering::Relaxed),
        }
    }

    /// Rejects every call until [`reset`](Self::reset).
    pub fn force_open(&self) {
        self.force(CircuitState::ForcedOpen, "forced open");
    }

    /// Admits every call and records nothing until [`reset`](Self::reset): the
    /// breaker is switched off.
    pub fn force_closed(&self) {
        self.force(CircuitState::Disabled, "forced closed");
    }

    /// Admits every call and keeps measuring, but never trips, until
    /// [`reset`](Self::reset).
    pub fn metrics_only(&self) {
        self.force(CircuitState::MetricsOnly, "metrics only");
    }

    /// Closes the breaker with empty counts and the open duration back at its
    /// first value, whatever state it was in.
    pub fn reset(&self) {
        self.force(CircuitState::Closed, "reset");
    }

    /// Calls `listener` after every state change, on the thread that made it.
    ///
    /// Listeners run outside the breaker's lock and may call any method of the
    /// breaker. They should be quick: the call that caused the change waits for them.
    pub fn on_state_change<F>(&self, listener: F)
    where
        F: Fn(&StateTransition) + Send + Sync + 'static,
    {
        self.shared.listeners.add(listener);
    }

    // ===== admission =====

    /// An open breaker past its open duration moves to half-open; before that, rejects.
    fn admit_open(&self, word: Word) -> Result<(), CircuitOpenError> {
        let now = self.now_nanos();
        let until = self.shared.hot.open_until.load(Ordering::Acquire);
        if now < until {
            let wait = Duration::from_nanos(until - now);
            return Err(self.reject(CircuitState::Open, Some(wait)));
        }
        self.transition(word, CircuitState::HalfOpen, "open duration elapsed");
        Ok(())
    }

    /// Takes a probe slot if one is free. `Ok(None)` means "look at the state again".
    fn admit_half_open(&self, word: Word) -> Result<Option<Permit>, CircuitOpenError> {
        if self.half_open_wait_exceeded() {
            self.transition(word, CircuitState::Open, "half-open wait exceeded");
            return Ok(None);
        }
        if word.probes() >= self.shared.config.half_open_max_calls {
            return Err(self.reject(CircuitState::HalfOpen, None));
        }
        let claimed = word.with_probe_added();
        let swapped = self.shared.hot.word.compare_exchange(
            word.0,
            claimed.0,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        Ok(swapped
            .is_ok()
            .then(|| Permit::new(self.clone(), claimed, true)))
    }

    fn half_open_wait_exceeded(&self) -> bool {
        let Some(max_wait) = self.shared.config.max_half_open_wait else {
            return false;
        };
        let since = self.shared.hot.state_since.load(Ordering::Acquire);
        self.now_nanos().saturating_sub(since) >= max_wait.as_nanos() as u64
    }

    fn reject(&self, state: CircuitState, retry_after: Option<Duration>) -> CircuitOpenError {
        self.shared.rejected.fetch_add(1, Ordering::Relaxed);
        tracing::trace!(breaker = %self.shared.name, %state, "call rejected");
        crate::transition::count_rejection(&self.shared.name);
        CircuitOpenError::new(self.shared.name.clone(), state, retry_after)
    }

    // ===== recording =====

    /// Records one outcome of a call admitted under `admitted`.
    #[inline]
    pub(crate) fn on_outcome(
        &self,
        admitted: Word,
        probe: bool,
        outcome: Outcome,
        latency: Duration,
    ) {
        let slow = self
            .shared
            .config
            .slow_call_duration
            .is_some_and(|slow| latency >= slow);
        if probe {
            self.on_probe_outcome(admitted, outcome, slow);
        } else {
            self.on_call_outcome(admitted, outcome, slow);
        }
    }

    /// A half-open probe finished: a failure (or a slow call) opens the breaker
    /// again; enough successes close it; an ignored probe just frees its slot.
    #[cold]
    #[inline(never)]
    fn on_probe_outcome(&self, admitted: Word, outcome: Outcome, slow: bool) {
        let failed = outcome == Outcome::Failure || slow;
        loop {
            let word = self.word();
            if !word.same_epoch(admitted) {
                return;
            }
            if failed {
                self.transition(word, CircuitState::Open, "probe failed");
                return;
            }
            let released = word.with_probe_released(outcome == Outcome::Success);
            let swapped = self.shared.hot.word.compare_exchange(
                word.0,
                released.0,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
            if swapped.is_ok() {
                if released.successes() >= self.shared.config.success_threshold {
                    self.transition(released, CircuitState::Closed, "probes succeeded");
                }
                return;
            }
        }
    }

    /// A call admitted while closed (or measuring) finished.
    #[inline]
    fn on_call_outcome(&self, admitted: Word, outcome: Outcome, slow: bool) {
        let state = admitted.state();
        if outcome == Outcome::Ignored || state == CircuitState::Disabled {
            return;
        }
        if !self.word().same_epoch(admitted) {
            // Admitted under a state that has since ended: its outcome is stale.
            return;
        }
        let failure = outcome == Outcome::Failure;
        let streak_tripped = self.count_streak(admitted, failure);
        let rate_tripped = self.count_in_window(Sample { failure, slow });
        if state == CircuitState::Closed && (streak_tripped || rate_tripped) {
            let reason = if streak_tripped {
                "consecutive failures"
            } else {
                "failure rate"
            };
            self.transition(admitted, CircuitState::Open, reason);
        }
    }

    /// Updates the run of consecutive failures; `true` when it reaches the threshold.
    #[inline]
    fn count_streak(&self, admitted: Word, failure: bool) -> bool {
        let Some(threshold) = self.shared.config.failure_threshold else {
            return false;
        };
        let streak = &self.shared.hot.consecutive_failures;
        if failure {
            let run = streak.fail(admitted.generation());
            return run.is_some_and(|run| run >= u64::from(threshold));
        }
        streak.succeed(admitted.generation());
        false
    }

    /// Adds the call to the sliding window; `true` when a rate reaches its threshold.
    #[inline]
    fn count_in_window(&self, sample: Sample) -> bool {
        let Some(window) = &self.shared.window else {
            return false;
        };
        let now = if window.is_timed() {
            self.now_nanos()
        } else {
            0
        };
        let counts = window.record(sample, now);
        let config = &self.shared.config;
        if counts.calls < config.minimum_calls {
            return false;
        }
        let failing = counts
            .failure_rate()
            .is_some_and(|rate| rate >= config.failure_rate_threshold);
        let slow = config.slow_call_duration.is_some()
            && counts
                .slow_rate()
                .is_some_and(|rate| rate >= config.slow_call_rate_threshold);
        failing || slow
    }

    // ===== state changes =====

    fn force(&self, to: CircuitState, reason: &'static str) {
        while !self.transition(self.word(), to, reason) {}
    }

    /// Moves from the epoch `from` to a new epoch in state `to`. Returns `false`
    /// (and changes nothing) when another thread already left `from`.
    pub(crate) fn transition(&self, from: Word, to: CircuitState, reason: &'static str) -> bool {
        let shared = &*self.shared;
        let mut control = lock(&shared.control);
        let now = self.now_nanos();
        let plan = control.plan(&shared.config, to);
        loop {
            let current = self.word();
            if !current.same_epoch(from) {
                return false;
            }
            let next = current.next(to);
            self.prepare(next, now, plan.open_for);
            let swapped = shared.hot.word.compare_exchange(
                current.0,
                next.0,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
            if swapped.is_ok() {
                break;
            }
        }
        // Counted once the change is published: `prepare` runs again whenever a
        // probe moving in the same epoch makes the compare-and-swap above retry.
        if to == CircuitState::Open {
            shared.times_opened.fetch_add(1, Ordering::Relaxed);
        }
        control.commit(plan);
        drop(control);
        let transition = StateTransition::new(shared.name.clone(), from.state(), to, reason);
        shared.listeners.announce(&transition, plan.open_for);
        true
    }

    /// Sets what the new state needs before it becomes visible.
    fn prepare(&self, next: Word, now: u64, open_for: Duration) {
        let hot = &self.shared.hot;
        hot.state_since.store(now, Ordering::Release);
        match next.state() {
            CircuitState::Open => {
                let until =
                    now.saturating_add(open_for.as_nanos().min(u128::from(u64::MAX)) as u64);
                hot.open_until.store(until, Ordering::Release);
            }
            CircuitState::Closed | CircuitState::MetricsOnly => {
                hot.consecutive_failures.restart(next.generation());
                // NOTE: window samples carry no generation. A call admitted in the
                // previous closed generation that records while this change is
                // published can land one stale sample in the fresh window; the
                // streak is tagged and cannot.
                if let Some(window) = &self.shared.window {
                    window.clear();
                }
            }
            CircuitState::HalfOpen | CircuitState::ForcedOpen | CircuitState::Disabled => {}
        }
    }

    // ===== helpers =====

    #[inline]
    fn word(&self) -> Word {
        Word(self.shared.hot.word.load(Ordering::Acquire))
    }

    fn now_nanos(&self) -> u64 {
        let elapsed = Instant::now().saturating_duration_since(self.shared.origin);
        elapsed.as_nanos().min(u128::from(u64::MAX)) as u64
    }

    /// Whether a call's latency must be measured for this breaker and classifier.
    pub(crate) fn needs_latency<Res, Err>(&self, classifier: &impl Classify<Res, Err>) -> bool {
        self.shared.config.slow_call_duration.is_some() || classifier.needs_latency()
    }
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.shared.name)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}
