//! [`CircuitBreakerConfig`] and its validating builder.

use std::time::Duration;

use tower_mesh_core::ConfigError;

use crate::state::MAX_HALF_OPEN_COUNT;

/// The largest count window, and the most buckets a time window may have.
pub const MAX_WINDOW_CALLS: u32 = 1_000_000;
const MAX_TIME_BUCKETS: u32 = 1_000;

/// Over which calls failure and slow-call rates are measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlidingWindow {
    /// The last `size` calls, exactly: each new outcome pushes out the oldest.
    Count {
        /// How many of the most recent calls count.
        size: u32,
    },
    /// The calls of the last `duration`, kept in `buckets` equal slices of time.
    ///
    /// The window slides one bucket at a time, so a rate covers between
    /// `duration - duration / buckets` and `duration` of history.
    Time {
        /// How much history counts.
        duration: Duration,
        /// How many slices `duration` is cut into; more slices slide more smoothly.
        buckets: u32,
    },
}

impl SlidingWindow {
    /// A window over the last `size` calls.
    pub fn count(size: u32) -> SlidingWindow {
        SlidingWindow::Count { size }
    }

    /// A window over the last `duration`, in ten buckets.
    pub fn time(duration: Duration) -> SlidingWindow {
        SlidingWindow::Time {
            duration,
            buckets: 10,
        }
    }
}

/// How the time spent open grows when a breaker trips again without having closed.
///
/// The n-th consecutive trip stays open `open_duration * multiplier^(n-1)`, then
/// scaled by a uniform random factor in `[1 - jitter, 1 + jitter]`, and never more
/// than `max`. A breaker that closes starts again from `open_duration`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpenBackoff {
    /// Growth factor per consecutive trip; `1.0` keeps the open duration constant.
    pub multiplier: f64,
    /// The longest a breaker stays open.
    pub max: Duration,
    /// Fraction of randomness applied to each open duration, in `[0, 1]`.
    pub jitter: f64,
}

/// The validated configuration of a [`CircuitBreaker`](crate::CircuitBreaker).
///
/// Build one with [`CircuitBreakerConfig::builder`], which rejects nonsense with a
/// [`ConfigError`] naming the field. The default keeps the classic numbers: open
/// after 5 consecutive failures, stay open 30 s, admit at most 3 probes at once in
/// half-open, and close after 2 successful probes.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_mesh_breaker::{CircuitBreakerConfig, SlidingWindow};
///
/// // Trip when half of the last 100 calls failed, once at least 20 were made.
/// let config = CircuitBreakerConfig::builder()
///     .sliding_window(SlidingWindow::count(100))
///     .failure_rate_threshold(50.0)
///     .minimum_calls(20)
///     .open_duration(Duration::from_secs(10))
///     .build()?;
/// assert_eq!(config.failure_threshold(), None);
///
/// let error = CircuitBreakerConfig::builder().failure_rate_threshold(150.0).build();
/// assert_eq!(error.unwrap_err().field(), "failure_rate_threshold");
/// # Ok::<(), tower_mesh_core::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CircuitBreakerConfig {
    pub(crate) failure_threshold: Option<u32>,
    pub(crate) success_threshold: u32,
    pub(crate) open_duration: Duration,
    pub(crate) half_open_max_calls: u32,
    pub(crate) max_half_open_wait: Option<Duration>,
    pub(crate) window: Option<SlidingWindow>,
    pub(crate) failure_rate_threshold: f64,
    pub(crate) minimum_calls: u32,
    pub(crate) slow_call_duration: Option<Duration>,
    pub(crate) slow_call_rate_threshold: f64,
    pub(crate) open_backoff: Option<OpenBackoff>,
    pub(crate) seed: Option<u64>,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        CircuitBreakerConfig {
            failure_threshold: Some(5),
            success_threshold: 2,
            open_duration: Duration::from_secs(30),
            half_open_max_calls: 3,
            max_half_open_wait: Some(Duration::from_secs(60)),
            window: None,
            failure_rate_threshold: 50.0,
            minimum_calls: 10,
            slow_call_duration: None,
            slow_call_rate_threshold: 100.0,
            open_backoff: None,
            seed: None,
        }
    }
}

impl CircuitBreakerConfig {
    /// A builder that starts from [`CircuitBreakerConfig::default`].
    pub fn builder() -> CircuitBreakerConfigBuilder {
        CircuitBreakerConfigBuilder {
            config: CircuitBreakerConfig::default(),
            failure_threshold_set: false,
        }
    }

    /// Consecutive failures that open a closed breaker, if that trip is enabled.
    pub fn failure_threshold(&self) -> Option<u32> {
        self.failure_threshold
    }

    /// Successful probes that close a half-open breaker.
    pub fn success_threshold(&self) -> u32 {
        self.success_threshold
    }

    /// How long a breaker stays open after its first trip.
    pub fn open_duration(&self) -> Duration {
        self.open_duration
    }

    /// Probes admitted at once while half-open.
    pub fn half_open_max_calls(&self) -> u32 {
        self.half_open_max_calls
    }

    /// Longest time spent half-open before the breaker gives up and opens again.
    pub fn max_half_open_wait(&self) -> Option<Duration> {
        self.max_half_open_wait
    }

    /// The window over which rates are measured, if rate trips are enabled.
    pub fn sliding_window(&self) -> Option<SlidingWindow> {
        self.window
    }

    /// Failure rate, in percent, at or above which the breaker opens.
    pub fn failure_rate_threshold(&self) -> f64 {
        self.failure_rate_threshold
    }

    /// Calls the window must hold before its rates can trip the breaker.
    pub fn minimum_calls(&self) -> u32 {
        self.minimum_calls
    }

    /// Calls at least this long count as slow, if slow-call tracking is enabled.
    pub fn slow_call_duration(&self) -> Option<Duration> {
        self.slow_call_duration
    }

    /// Slow-call rate, in percent, at or above which the breaker opens.
    pub fn slow_call_rate_threshold(&self) -> f64 {
        self.slow_call_rate_threshold
    }

    /// How open durations grow over consecutive trips, if they do.
    pub fn open_backoff(&self) -> Option<OpenBackoff> {
        self.open_backoff
    }

    /// The length of the `trip`-th consecutive open period (1-based), before jitter.
    pub(crate) fn open_duration_for_trip(&self, trip: u32) -> Duration {
        let Some(backoff) = self.open_backoff else {
            return self.open_duration;
        };
        let exponent = trip.saturating_sub(1).min(1_024) as i32;
        let seconds = self.open_duration.as_secs_f64() * backoff.multiplier.powi(exponent);
        Duration::try_from_secs_f64(seconds)
            .unwrap_or(backoff.max)
            .min(backoff.max)
    }
}

/// Builds a [`CircuitBreakerConfig`]; see [`CircuitBreakerConfig::builder`].
///
/// Setters never fail; [`build`](CircuitBreakerConfigBuilder::build) checks every
/// value and reports the first one that makes no sense.
#[derive(Debug, Clone)]
pub struct CircuitBreakerConfigBuilder {
    config: CircuitBreakerConfig,
    failure_threshold_set: bool,
}

impl CircuitBreakerConfigBuilder {
    /// Open after this many consecutive failures (default 5).
    pub fn failure_threshold(mut self, failures: u32) -> Self {
        self.config.failure_threshold = Some(failures);
        self.failure_threshold_set = true;
        self
    }

    /// Never open on consecutive failures; only the rates of the sliding window trip.
    pub fn without_failure_threshold(mut self) -> Self {
        self.config.failure_threshold = None;
        self.failure_threshold_set = true;
        self
    }

    /// Close after this many successful probes in half-open (default 2).
    pub fn success_threshold(mut self, successes: u32) -> Self {
        self.config.success_threshold = successes;
        self
    }

    /// Stay open this long after a trip (default 30 s).
    pub fn open_duration(mut self, duration: Duration) -> Self {
        self.config.open_duration = duration;
        self
    }

    /// Admit at most this many probes at once in half-open (default 3).
    pub fn half_open_max_calls(mut self, calls: u32) -> Self {
        self.config.half_open_max_calls = calls;
        self
    }

    /// Open again when half-open lasts longer than this, so probes that never finish
    /// cannot hold the breaker there (default 60 s; `None` waits for the probes).
    pub fn max_half_open_wait(mut self, wait: Option<Duration>) -> Self {
        self.config.max_half_open_wait = wait;
        self
    }

    /// Measure failure and slow-call rates over this window.
    ///
    /// Setting a window turns off the consecutive-failure trip unless
    /// [`failure_threshold`](Self::failure_threshold) is also set.
    pub fn sliding_window(mut self, window: SlidingWindow) -> Self {
        self.config.window = Some(window);
        self
    }

    /// Open when the window's failure rate reaches this percentage (default 50).
    pub fn failure_rate_threshold(mut self, percent: f64) -> Self {
        self.config.failure_rate_threshold = percent;
        self
    }

    /// Let rates trip only once the window holds this many calls (default 10).
    pub fn minimum_calls(mut self, calls: u32) -> Self {
        self.config.minimum_calls = calls;
        self
    }

    /// Count calls that take at least `duration` as slow.
    pub fn slow_call_duration(mut self, duration: Duration) -> Self {
        self.config.slow_call_duration = Some(duration);
        self
    }

    /// Open when the window's slow-call rate reaches this percentage (default 100).
    pub fn slow_call_rate_threshold(mut self, percent: f64) -> Self {
        self.config.slow_call_rate_threshold = percent;
        self
    }

    /// Grow the open duration by `multiplier` on each consecutive trip, up to `max`.
    pub fn open_duration_growth(mut self, multiplier: f64, max: Duration) -> Self {
        let backoff = self.backoff();
        self.config.open_backoff = Some(OpenBackoff {
            multiplier,
            max,
            ..backoff
        });
        self
    }

    /// Scale each open duration by a random factor in `[1 - jitter, 1 + jitter]`.
    pub fn open_duration_jitter(mut self, jitter: f64) -> Self {
        let backoff = self.backoff();
        self.config.open_backoff = Some(OpenBackoff { jitter, ..backoff });
        self
    }

    /// Seed the jitter's random source, for reproducible open durations.
    pub fn seed(mut self, seed: u64) -> Self {
        self.config.seed = Some(seed);
        self
    }

    fn backoff(&self) -> OpenBackoff {
        self.config.open_backoff.unwrap_or(OpenBackoff {
            multiplier: 1.0,
            max: self.config.open_duration,
            jitter: 0.0,
        })
    }

    /// Checks every value and returns the configuration.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first setting that is out of range.
    pub fn build(self) -> Result<CircuitBreakerConfig, ConfigError> {
        let mut config = self.config;
        if config.window.is_some() && !self.failure_threshold_set {
            config.failure_threshold = None;
        }
        validate_thresholds(&config)?;
        validate_window(&config)?;
        validate_backoff(&config)?;
        Ok(config)
    }
}

fn validate_thresholds(config: &CircuitBreakerConfig) -> Result<(), ConfigError> {
    if config.failure_threshold == Some(0) {
        return Err(ConfigError::new("failure_threshold", "must be at least 1"));
    }
    check_count("success_threshold", config.success_threshold)?;
    check_count("half_open_max_calls", config.half_open_max_calls)?;
    check_positive("open_duration", config.open_duration)?;
    if let Some(wait) = config.max_half_open_wait {
        check_positive("max_half_open_wait", wait)?;
    }
    check_percent("failure_rate_threshold", config.failure_rate_threshold)?;
    check_percent("slow_call_rate_threshold", config.slow_call_rate_threshold)?;
    if let Some(duration) = config.slow_call_duration {
        check_positive("slow_call_duration", duration)?;
    }
    Ok(())
}

fn validate_window(config: &CircuitBreakerConfig) -> Result<(), ConfigError> {
    if config.minimum_calls == 0 {
        return Err(ConfigError::new("minimum_calls", "must be at least 1"));
    }
    match config.window {
        None if config.slow_call_duration.is_some() => Err(ConfigError::new(
            "sliding_window",
            "slow-call tracking needs a sliding window to measure the slow-call rate",
        )),
        None => Ok(()),
        Some(SlidingWindow::Count { size }) => {
            if size == 0 || size > MAX_WINDOW_CALLS {
                let reason =
                    format!("count window size must be in 1..={MAX_WINDOW_CALLS}, got {size}");
                return Err(ConfigError::new("sliding_window", reason));
            }
            if config.minimum_calls > size {
                let reason = format!(
                    "{} is more calls than the count window holds ({size}), so rates could never trip",
                    config.minimum_calls
                );
                return Err(ConfigError::new("minimum_calls", reason));
            }
            Ok(())
        }
        Some(SlidingWindow::Time { duration, buckets }) => {
            if buckets == 0 || buckets > MAX_TIME_BUCKETS {
                let reason =
                    format!("time window needs 1..={MAX_TIME_BUCKETS} buckets, got {buckets}");
                return Err(ConfigError::new("sliding_window", reason));
            }
            if duration.as_nanos() / u128::from(buckets) < 1_000_000 {
                let reason = format!("each of {buckets} buckets of {duration:?} is under 1 ms");
                return Err(ConfigError::new("sliding_window", reason));
            }
            Ok(())
        }
    }
}

fn validate_backoff(config: &CircuitBreakerConfig) -> Result<(), ConfigError> {
    let Some(backoff) = config.open_backoff else {
        return Ok(());
    };
    if !backoff.multiplier.is_finite() || backoff.multiplier < 1.0 {
        let reason = format!(
            "growth multiplier must be finite and at least 1, got {}",
            backoff.multiplier
        );
        return Err(ConfigError::new("open_duration_growth", reason));
    }
    if backoff.max < config.open_duration {
        let reason = format!(
            "maximum open duration {:?} is below open_duration {:?}",
            backoff.max, config.open_duration
        );
        return Err(ConfigError::new("open_duration_growth", reason));
    }
    if !(0.0..=1.0).contains(&backoff.jitter) {
        let reason = format!("must be in [0, 1], got {}", backoff.jitter);
        return Err(ConfigError::new("open_duration_jitter", reason));
    }
    Ok(())
}

fn check_count(field: &'static str, value: u32) -> Result<(), ConfigError> {
    if value == 0 || value > MAX_HALF_OPEN_COUNT {
        let reason = format!("must be in 1..={MAX_HALF_OPEN_COUNT}, got {value}");
        return Err(ConfigError::new(field, reason));
    }
    Ok(())
}

fn check_positive(field: &'static str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        return Err(ConfigError::new(field, "must be greater than zero"));
    }
    Ok(())
}

fn check_percent(field: &'static str, value: f64) -> Result<(), ConfigError> {
    if !(value > 0.0 && value <= 100.0) {
        let reason = format!("must be a percentage in (0, 100], got {value}");
        return Err(ConfigError::new(field, reason));
    }
    Ok(())
}
