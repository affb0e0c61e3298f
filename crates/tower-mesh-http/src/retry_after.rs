//! `Retry-After`: parsing the header and honouring it in a retry policy.

use std::fmt;
use std::time::{Duration, SystemTime};

use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderValue, Response};
use tower_mesh_core::ConfigError;
use tower_mesh_retry::{RetryDecision, Retryable};

/// The wait a `Retry-After` value asks for, measured from `now`.
///
/// Both forms of the header are understood: delta-seconds (`120`) and an
/// HTTP-date (`Wed, 21 Oct 2015 07:28:00 GMT`, and the two obsolete date formats
/// HTTP still accepts). A date in the past asks for no wait. Anything else —
/// negative or fractional numbers, numbers too large for a `Duration`, garbage,
/// non-ASCII bytes — is `None`: a malformed header is ignored, never an error.
///
/// # Example
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use http::HeaderValue;
/// use tower_mesh_http::parse_retry_after;
///
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_400);
/// assert_eq!(parse_retry_after(&HeaderValue::from_static("120"), now), Some(Duration::from_secs(120)));
/// let date = HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT");
/// assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(80)));
/// assert_eq!(parse_retry_after(&HeaderValue::from_static("soon"), now), None);
/// ```
pub fn parse_retry_after(value: &HeaderValue, now: SystemTime) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if text.bytes().all(|byte| byte.is_ascii_digit()) {
        return parse_delta_seconds(text);
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn parse_delta_seconds(text: &str) -> Option<Duration> {
    if text.is_empty() {
        return None;
    }
    text.parse::<u64>().ok().map(Duration::from_secs)
}

/// The `Retry-After` of `headers`, measured from the system clock now.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    parse_retry_after(headers.get(RETRY_AFTER)?, SystemTime::now())
}

// ===== RetryAfter =====

/// A retry predicate for HTTP responses that waits as long as the server asks.
///
/// A failed response carrying a `Retry-After` is retried after the wait it asks
/// for, capped at [`max_wait`](Self::max_wait) so that one server cannot hold a
/// call for as long as it likes (the policy's own `max_delay` and deadline still
/// apply on top). A failed response without the header, or with a malformed one,
/// and every error, are retried on the policy's own backoff.
///
/// Use it with [`RetryPolicy::with_retryable`](tower_mesh_retry::RetryPolicy::with_retryable).
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_mesh_http::{RetryAfter, StatusClassifier};
/// use tower_mesh_retry::RetryPolicy;
///
/// let policy = RetryPolicy::default()
///     .with_classifier(StatusClassifier::gateway_errors())
///     .with_retryable(RetryAfter::new(Duration::from_secs(5))?);
/// # let _ = policy;
/// # Ok::<(), tower_mesh_core::ConfigError>(())
/// ```
#[derive(Clone, Copy)]
pub struct RetryAfter {
    max_wait: Duration,
    clock: fn() -> SystemTime,
}

impl RetryAfter {
    /// Honours `Retry-After` waits up to `max_wait`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for `max_wait` when it is zero.
    pub fn new(max_wait: Duration) -> Result<Self, ConfigError> {
        if max_wait.is_zero() {
            return Err(ConfigError::new("max_wait", "must be greater than zero"));
        }
        Ok(RetryAfter {
            max_wait,
            clock: SystemTime::now,
        })
    }

    /// Reads HTTP-dates against `clock` instead of the system clock, for tests.
    pub fn with_clock(mut self, clock: fn() -> SystemTime) -> Self {
        self.clock = clock;
        self
    }

    /// The longest wait honoured.
    pub fn max_wait(&self) -> Duration {
        self.max_wait
    }

    /// The decision for a failed response with these headers.
    pub fn decide(&self, headers: &HeaderMap) -> RetryDecision {
        let Some(value) = headers.get(RETRY_AFTER) else {
            return RetryDecision::Backoff;
        };
        match parse_retry_after(value, (self.clock)()) {
            Some(wait) => RetryDecision::After(wait.min(self.max_wait)),
            None => {
                tracing::trace!(value = ?value, "malformed retry-after ignored");
                RetryDecision::Backoff
            }
        }
    }
}

impl<B, E> Retryable<Response<B>, E> for RetryAfter {
    fn check(&self, _retry: u32, result: Result<&Response<B>, &E>) -> RetryDecision {
        match result {
            Ok(response) => self.decide(response.headers()),
            Err(_) => RetryDecision::Backoff,
        }
    }
}

impl fmt::Debug for RetryAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryAfter")
            .field("max_wait", &self.max_wait)
            .finish_non_exhaustive()
    }
}
