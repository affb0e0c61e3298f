//! [`RetryPolicy`], its validating builder, and the decision taken after each
//! attempt.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tower_mesh_core::{Classify, ConfigError, ErrorsAsFailures, Outcome};

use crate::backoff::{self, Backoff};
use crate::report::{self, GiveUp};
use crate::retryable::{
    is_circuit_open, AnyFailure, CloneRequest, DelayFn, ReplayRequest, ReplayWith, RetryDecision,
    RetryIf, Retryable,
};
use crate::settings::Settings;
use crate::RetryBudget;

/// When, how often and how far apart failed calls are retried.
///
/// A policy holds the numbers (attempt limit, [`Backoff`], cap, jitter,
/// deadline), an optional shared [`RetryBudget`], a [`Classify`] classifier that
/// says which calls failed, a [`Retryable`] predicate that says which failures are
/// worth another try, and a [`ReplayRequest`] hook that copies requests.
///
/// [`RetryPolicy::default`] keeps the classic numbers: up to 3 retries, a first
/// delay of 100 ms doubling with each retry, no delay above 10 s, and each delay
/// scaled by a random factor in `[0.5, 1.5]`. It has no budget and no deadline.
///
/// Use a policy with [`RetryLayer`](crate::RetryLayer), with
/// [`execute`](Self::execute) or [`with_retry`](crate::with_retry), or as a
/// [`tower::retry::Policy`].
///
/// # What is never retried
///
/// - a call the classifier judges a success or ignores;
/// - a failure the predicate turns down;
/// - a call rejected by an open circuit breaker (an error that is, or whose
///   `source()` chain holds, a
///   [`CircuitOpenError`](tower_mesh_breaker::CircuitOpenError)): a retry would
///   meet the same breaker. Put the retry layer outside the breaker;
/// - a request the [`ReplayRequest`] hook cannot copy;
/// - anything once the attempts, the deadline or the budget are spent.
///
/// # Clone
///
/// The numbers are stored once for the life of the program (equal configurations
/// share one copy), so a clone is a reference to them, the seed, and the shared
/// budget. The layers clone the policy once per request to count that request's
/// attempts; the clone costs a few words of copying and, with a budget, one
/// reference count.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_mesh_retry::{Backoff, RetryBudget, RetryPolicy};
///
/// let policy = RetryPolicy::builder()
///     .max_retries(4)
///     .backoff(Backoff::exponential(Duration::from_millis(50), 2.0))
///     .max_delay(Duration::from_secs(1))
///     .jitter(0.0)
///     .deadline(Duration::from_secs(3))
///     .budget(RetryBudget::default())
///     .build()?;
/// assert_eq!(policy.get_delay(1), Duration::from_millis(50));
/// assert_eq!(policy.get_delay(3), Duration::from_millis(200));
/// assert_eq!(policy.get_delay(9), Duration::from_secs(1), "capped");
/// # Ok::<(), tower_mesh_core::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct RetryPolicy<C = ErrorsAsFailures, R = AnyFailure, K = CloneRequest> {
    settings: &'static Settings,
    seed: u64,
    budget: Option<RetryBudget>,
    classifier: C,
    retryable: R,
    replay: K,
    progress: Progress,
}

/// Where one request stands: how many retries it made and when it began.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Progress {
    retries: u32,
    started: Option<Instant>,
    attempt_started: Option<Instant>,
    /// The budget slot of a retry decided on but not sent yet.
    withdrawn: Option<u64>,
}

/// Why an attempt's outcome is worth a retry, for the logs.
#[derive(Debug, Clone, Copy)]
enum Reason {
    Error,
    FailedResponse,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Error => "error",
            Reason::FailedResponse => "failed response",
        }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::from_settings(Settings::default(), None, None)
    }
}

impl RetryPolicy {
    /// A builder starting from [`RetryPolicy::default`]'s numbers.
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicyBuilder {
            settings: Settings::default(),
            seed: None,
            budget: None,
        }
    }

    /// A policy that never retries, for stacks where retries are switched off.
    pub fn never() -> RetryPolicy {
        let settings = Settings {
            max_retries: 0,
            ..Settings::default()
        };
        RetryPolicy::from_settings(settings, None, None)
    }

    fn from_settings(
        settings: Settings,
        seed: Option<u64>,
        budget: Option<RetryBudget>,
    ) -> RetryPolicy {
        let settings = Settings {
            seeded: seed.is_some(),
            ..settings
        };
        RetryPolicy {
            settings: crate::settings::intern(settings),
            seed: seed.unwrap_or_else(backoff::random_seed),
            budget,
            classifier: ErrorsAsFailures,
            retryable: AnyFailure,
            replay: CloneRequest,
            progress: Progress::default(),
        }
    }
}

// ===== configuration and accessors =====

impl<C, R, K> RetryPolicy<C, R, K> {
    /// Judges calls with `classifier` instead: only calls it classifies as
    /// [`Outcome::Failure`] are retried.
    pub fn with_classifier<C2>(self, classifier: C2) -> RetryPolicy<C2, R, K> {
        RetryPolicy {
            settings: self.settings,
            seed: self.seed,
            budget: self.budget,
            classifier,
            retryable: self.retryable,
            replay: self.replay,
            progress: self.progress,
        }
    }

    /// Retries only the failures for which `predicate` returns `true`.
    ///
    /// ```
    /// use tower_mesh_retry::RetryPolicy;
    ///
    /// // A refused connection is worth another try; a bad request is not.
    /// let policy = RetryPolicy::default().retry_if(|result: Result<&(), &std::io::Error>| {
    ///     matches!(result, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
    /// });
    /// # let _ = policy;
    /// ```
    pub fn retry_if<F>(self, predicate: F) -> RetryPolicy<C, RetryIf<F>, K> {
        self.with_retryable(RetryIf { predicate })
    }

    /// Picks each retry's delay with `delay`, from the retry number (from 1) and
    /// the failed call; `None` declines the retry. This is the custom backoff: it
    /// replaces the policy's [`Backoff`], while the cap, the attempt limit, the
    /// deadline and the budget still apply.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_mesh_retry::RetryPolicy;
    ///
    /// // The server says how long to wait: a response carrying `Some(seconds)`.
    /// let policy = RetryPolicy::default().delay_fn(
    ///     |retry, result: Result<&Option<u64>, &std::io::Error>| match result {
    ///         Ok(Some(seconds)) => Some(Duration::from_secs(*seconds)),
    ///         _ => Some(Duration::from_millis(100) * retry),
    ///     },
    /// );
    /// # let _ = policy;
    /// ```
    pub fn delay_fn<F>(self, delay: F) -> RetryPolicy<C, DelayFn<F>, K> {
        self.with_retryable(DelayFn { delay })
    }

    /// Decides which failures are retried with any [`Retryable`] implementation.
    pub fn with_retryable<R2>(self, retryable: R2) -> RetryPolicy<C, R2, K> {
        RetryPolicy {
            settings: self.settings,
            seed: self.seed,
            budget: self.budget,
            classifier: self.classifier,
            retryable,
            replay: self.replay,
            progress: self.progress,
        }
    }

    /// Copies requests for retries with `replay`, which returns `None` for a
    /// request that cannot be sent twice. The default clones them.
    pub fn replay_with<F>(self, replay: F) -> RetryPolicy<C, R, ReplayWith<F>> {
        RetryPolicy {
            settings: self.settings,
            seed: self.seed,
            budget: self.budget,
            classifier: self.classifier,
            retryable: self.retryable,
            replay: ReplayWith { replay },
            progress: self.progress,
        }
    }

    /// Starts no retry later than `deadline` after the first attempt began, or
    /// than the policy's own deadline if that is earlier. A layer that bounds the
    /// whole call (an overall timeout) caps its policy's deadline with it, so that
    /// no backoff outlasts the call.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_mesh_retry::RetryPolicy;
    ///
    /// let policy = RetryPolicy::builder().deadline(Duration::from_secs(3)).build()?;
    /// assert_eq!(policy.clone().cap_deadline(Duration::from_secs(1)).deadline(), Some(Duration::from_secs(1)));
    /// assert_eq!(policy.cap_deadline(Duration::from_secs(5)).deadline(), Some(Duration::from_secs(3)));
    /// # Ok::<(), tower_mesh_core::ConfigError>(())
    /// ```
    pub fn cap_deadline(mut self, deadline: Duration) -> Self {
        let capped = match self.settings.deadline {
            Some(own) if own <= deadline => return self,
            _ => deadline,
        };
        let settings = Settings {
            deadline: Some(capped),
            ..*self.settings
        };
        self.settings = crate::settings::intern(settings);
        self
    }

    /// The name used in logs and metrics.
    pub fn name(&self) -> &'static str {
        self.settings.name
    }

    /// Retries allowed after the first attempt.
    pub fn max_retries(&self) -> u32 {
        self.settings.max_retries
    }

    /// How delays grow.
    pub fn backoff(&self) -> Backoff {
        self.settings.backoff
    }

    /// The longest delay before any retry.
    pub fn max_delay(&self) -> Duration {
        self.settings.max_delay
    }

    /// The proportional jitter applied to constant, linear and exponential delays.
    pub fn jitter(&self) -> f64 {
        self.settings.jitter
    }

    /// The time after the first attempt began past which no retry starts.
    pub fn deadline(&self) -> Option<Duration> {
        self.settings.deadline
    }

    /// The shared budget, if the policy has one.
    pub fn budget(&self) -> Option<&RetryBudget> {
        self.budget.as_ref()
    }

    /// The delay before retry `retry` (from 1; `0` gives zero), as the policy's
    /// [`Backoff`] and jitter compute it, capped at [`max_delay`](Self::max_delay).
    ///
    /// With a [seed](RetryPolicyBuilder::seed), the answer for a given `retry` is
    /// the same on every call, on every clone and in every run. Decorrelated jitter
    /// grows from the previous delay, so for it this takes time proportional to
    /// `retry`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tower_mesh_retry::RetryPolicy;
    ///
    /// let policy = RetryPolicy::builder().seed(7).build()?;
    /// let first = policy.get_delay(1);
    /// assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(150));
    /// assert_eq!(first, policy.clone().get_delay(1));
    /// # Ok::<(), tower_mesh_core::ConfigError>(())
    /// ```
    pub fn get_delay(&self, retry: u32) -> Duration {
        let settings = self.settings;
        let first = settings.backoff.first_delay();
        if retry == 0 {
            return Duration::ZERO;
        }
        if !matches!(settings.backoff, Backoff::DecorrelatedJitter { .. }) {
            return settings.delay(retry, first, self.seed);
        }
        (1..=retry).fold(first, |previous, number| {
            settings.delay(number, previous, self.seed)
        })
    }

    /// How many retries this copy of the policy has made for its request.
    pub(crate) fn retries(&self) -> u32 {
        self.progress.retries
    }
}

// ===== the decision after each attempt =====

impl<C, R, K> RetryPolicy<C, R, K> {
    /// Prepares this per-request copy for its first attempt: starts the clocks the
    /// deadline and the classifier need, and pays the request into the budget.
    #[inline]
    pub(crate) fn begin_request(&mut self, needs_latency: bool) {
        self.progress = self.start_request(needs_latency);
    }

    /// Starts a request: pays it into the budget and reads the clock if the
    /// deadline or the classifier needs it. Returns the request's progress, for a
    /// per-request copy made with [`for_request`](Self::for_request).
    #[inline]
    pub(crate) fn start_request(&self, needs_latency: bool) -> Progress {
        let mut progress = Progress::default();
        if self.settings.deadline.is_some() || needs_latency {
            let now = Instant::now();
            progress.started = Some(now);
            progress.attempt_started = needs_latency.then_some(now);
        }
        if let Some(budget) = &self.budget {
            budget.deposit();
        }
        report::attempt(self.settings.name);
        progress
    }

    /// A copy of this policy for one request at `progress`.
    ///
    /// Built field by field into its destination: a copy made first and updated
    /// after would be read back before its writes settle, which costs more than
    /// the rest of a successful call.
    #[inline]
    pub(crate) fn for_request(&self, progress: Progress) -> Self
    where
        C: Clone,
        R: Clone,
        K: Clone,
    {
        RetryPolicy {
            settings: self.settings,
            seed: self.seed,
            budget: self.budget.clone(),
            classifier: self.classifier.clone(),
            retryable: self.retryable.clone(),
            replay: self.replay.clone(),
            progress,
        }
    }

    /// Prepares this per-request copy for the retry it has just decided on.
    pub(crate) fn begin_retry(&mut self, needs_latency: bool) {
        self.progress.withdrawn = None;
        if needs_latency {
            self.progress.attempt_started = Some(Instant::now());
        }
        report::attempt(self.settings.name);
    }

    /// Gives the budget back the retry decided on and not sent, if any: for a
    /// call dropped while it waits to retry.
    pub(crate) fn refund_unsent(&mut self) {
        if let (Some(slot), Some(budget)) = (self.progress.withdrawn.take(), &self.budget) {
            budget.refund(slot);
        }
    }

    /// The budget and slot to refund if the retry just decided on is never
    /// sent, for a delay future that outlives this borrow of the policy.
    pub(crate) fn unsent_refund(&self) -> Option<(RetryBudget, u64)> {
        Some((self.budget.clone()?, self.progress.withdrawn?))
    }

    /// Copies `request` for a later retry, if the hook can.
    pub(crate) fn replay<Req>(&self, request: &Req) -> Option<Req>
    where
        K: ReplayRequest<Req>,
    {
        self.replay.replay(request)
    }

    /// The classifier's latency needs, asked once per request.
    pub(crate) fn needs_latency<Res, E>(&self) -> bool
    where
        C: Classify<Res, E>,
    {
        self.classifier.needs_latency()
    }

    /// Judges a finished attempt: `None` when its result is final, or the delay
    /// after which to retry. A retry decided here is already counted against the
    /// attempt limit and the budget.
    ///
    /// `replayable` tells whether a copy of the request is at hand. Only the
    /// classification is inlined: when it can see that a call succeeded, the
    /// compiler drops the rest, and the first-attempt-succeeds path costs nothing
    /// more.
    #[inline]
    pub(crate) fn after_attempt<Res, E: 'static>(
        &mut self,
        result: Result<&Res, &E>,
        replayable: bool,
    ) -> Option<Duration>
    where
        C: Classify<Res, E>,
        R: Retryable<Res, E>,
    {
        if self.classifier.classify(result, self.latency()) != Outcome::Failure {
            return None;
        }
        self.after_failure(result, replayable)
    }

    #[inline(never)]
    fn after_failure<Res, E: 'static>(
        &mut self,
        result: Result<&Res, &E>,
        replayable: bool,
    ) -> Option<Duration>
    where
        R: Retryable<Res, E>,
    {
        let reason = match result {
            Err(error) if is_circuit_open(error) => return self.give_up(GiveUp::CircuitOpen),
            Err(_) => Reason::Error,
            Ok(_) => Reason::FailedResponse,
        };
        let retry = self.progress.retries.saturating_add(1);
        let delay = match self.retryable.check(retry, result) {
            RetryDecision::Stop => return self.give_up(GiveUp::NotRetryable),
            RetryDecision::After(delay) => delay.min(self.settings.max_delay),
            RetryDecision::Backoff => self.next_backoff(retry),
        };
        self.admit(retry, delay, replayable)?;
        self.progress.retries = retry;
        report::retry(self.settings.name, retry + 1, delay, reason.as_str());
        Some(delay)
    }

    /// Checks the limits that can still refuse a retry, cheapest first and the
    /// budget last, so that a refused retry spends no budget.
    fn admit(&mut self, retry: u32, delay: Duration, replayable: bool) -> Option<()> {
        if retry > self.settings.max_retries {
            return self.give_up(GiveUp::Exhausted);
        }
        if !replayable {
            return self.give_up(GiveUp::NotReplayable);
        }
        if self.past_deadline(delay) {
            return self.give_up(GiveUp::Deadline);
        }
        if let Some(budget) = &self.budget {
            match budget.withdraw_in_slot() {
                Some(slot) => self.progress.withdrawn = Some(slot),
                None => return self.give_up(GiveUp::Budget),
            }
        }
        Some(())
    }

    fn next_backoff(&mut self, retry: u32) -> Duration {
        if retry == 1 && !self.settings.seeded {
            self.seed ^= backoff::next_stream();
        }
        self.get_delay(retry)
    }

    /// Whether a retry after `delay` would start past the deadline.
    fn past_deadline(&self, delay: Duration) -> bool {
        match (self.settings.deadline, self.progress.started) {
            (Some(deadline), Some(started)) => started.elapsed().saturating_add(delay) > deadline,
            _ => false,
        }
    }

    fn latency(&self) -> Duration {
        self.progress
            .attempt_started
            .map_or(Duration::ZERO, |started| started.elapsed())
    }

    fn give_up<T>(&self, why: GiveUp) -> Option<T> {
        report::give_up(self.settings.name, self.progress.retries + 1, why);
        None
    }
}

// ===== execute =====

impl<C, R, K> RetryPolicy<C, R, K>
where
    C: Clone,
    R: Clone,
    K: Clone,
{
    /// Runs `operation` and retries it by this policy: `operation` is called again
    /// for each attempt, after the backoff delay.
    ///
    /// # Errors
    ///
    /// The last attempt's error, unchanged, when no retry is left (or the last
    /// failed `Ok` response, which is returned as `Ok`).
    ///
    /// # Cancel safety
    ///
    /// Dropping the returned future cancels the attempt in flight or the pending
    /// delay; no further attempt starts. A retry already counted against the budget
    /// stays counted.
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU32, Ordering};
    /// use tower_mesh_retry::RetryPolicy;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let calls = AtomicU32::new(0);
    /// let answer = RetryPolicy::default()
    ///     .execute(|| async {
    ///         match calls.fetch_add(1, Ordering::Relaxed) {
    ///             0 | 1 => Err("busy"),
    ///             _ => Ok(42),
    ///         }
    ///     })
    ///     .await;
    /// assert_eq!(answer, Ok(42));
    /// assert_eq!(calls.load(Ordering::Relaxed), 3);
    /// # }
    /// ```
    pub async fn execute<F, Fut, T, E>(&self, mut operation: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        C: Classify<T, E>,
        R: Retryable<T, E>,
        E: 'static,
    {
        let mut policy = RefundOnDrop(self.clone());
        let needs_latency = policy.0.needs_latency();
        policy.0.begin_request(needs_latency);
        loop {
            let result = operation().await;
            let Some(delay) = policy.0.after_attempt(result.as_ref(), true) else {
                return result;
            };
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            policy.0.begin_retry(needs_latency);
        }
    }
}

/// A per-request policy that refunds its unsent retry when dropped: when
/// [`RetryPolicy::execute`]'s future is dropped during a backoff.
struct RefundOnDrop<C, R, K>(RetryPolicy<C, R, K>);

impl<C, R, K> Drop for RefundOnDrop<C, R, K> {
    fn drop(&mut self) {
        self.0.refund_unsent();
    }
}

impl<C, R, K> fmt::Debug for RetryPolicy<C, R, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let settings = self.settings;
        f.debug_struct("RetryPolicy")
            .field("name", &settings.name)
            .field("max_retries", &settings.max_retries)
            .field("backoff", &settings.backoff)
            .field("max_delay", &settings.max_delay)
            .field("jitter", &settings.jitter)
            .field("deadline", &settings.deadline)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

// ===== builder =====

/// Builds a [`RetryPolicy`]; see [`RetryPolicy::builder`].
///
/// Setters never fail; [`build`](RetryPolicyBuilder::build) checks every value
/// and names the first one that makes no sense.
#[derive(Debug, Clone)]
pub struct RetryPolicyBuilder {
    settings: Settings,
    seed: Option<u64>,
    budget: Option<RetryBudget>,
}

impl RetryPolicyBuilder {
    /// Names the policy in logs and metrics (default `"default"`).
    pub fn name(mut self, name: &'static str) -> Self {
        self.settings.name = name;
        self
    }

    /// Retries allowed after the first attempt (default 3); `0` never retries.
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.settings.max_retries = retries;
        self
    }

    /// How delays grow (default exponential from 100 ms, factor 2).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.settings.backoff = backoff;
        self
    }

    /// No delay is ever longer than this (default 10 s).
    pub fn max_delay(mut self, cap: Duration) -> Self {
        self.settings.max_delay = cap;
        self
    }

    /// Scales each constant, linear or exponential delay by a uniformly random
    /// factor in `[1 - jitter, 1 + jitter]`; `jitter` is in `[0, 1]` (default 0.5,
    /// `0` for exact delays).
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.settings.jitter = jitter;
        self
    }

    /// Starts no retry later than `deadline` after the first attempt began.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.settings.deadline = Some(deadline);
        self
    }

    /// Spends retries from `budget`, which every clone of the policy shares.
    pub fn budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Seeds the jitter, for reproducible delays.
    ///
    /// Every request then draws the same sequence of delays, which suits tests but
    /// gives up spreading out clients that fail together; leave production
    /// policies unseeded.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Checks every value and returns the policy.
    ///
    /// The numbers of each distinct configuration are kept for the rest of the
    /// program (about a hundred bytes; building an equal configuration again reuses
    /// them), which keeps the per-request copy of a policy small. Build policies at
    /// start-up or from configuration, not from values that differ per request.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first setting out of range: `backoff` for a
    /// factor that is not a finite number of at least 1, `max_delay` for a cap
    /// below the backoff's first delay, `jitter` outside `[0, 1]`, `deadline` of
    /// zero.
    pub fn build(self) -> Result<RetryPolicy, ConfigError> {
        let settings = self.settings;
        validate_backoff(&settings.backoff)?;
        let first = settings.backoff.first_delay();
        if settings.max_delay < first {
            let reason = format!(
                "{:?} is below the backoff's first delay {first:?}",
                settings.max_delay
            );
            return Err(ConfigError::new("max_delay", reason));
        }
        if !(0.0..=1.0).contains(&settings.jitter) {
            let reason = format!("must be in [0, 1], got {}", settings.jitter);
            return Err(ConfigError::new("jitter", reason));
        }
        if settings.deadline == Some(Duration::ZERO) {
            return Err(ConfigError::new("deadline", "must be greater than zero"));
        }
        Ok(RetryPolicy::from_settings(settings, self.seed, self.budget))
    }
}

fn validate_backoff(backoff: &Backoff) -> Result<(), ConfigError> {
    match backoff.factor() {
        Some(factor) if !(factor.is_finite() && factor >= 1.0) => {
            let reason = format!("factor must be a finite number of at least 1, got {factor}");
            Err(ConfigError::new("backoff", reason))
        }
        _ => Ok(()),
    }
}
