//! [`FaultConfig`]: which faults to inject, how often, validated.

use std::time::Duration;

use tower_mesh_core::ConfigError;

/// How long an injected delay lasts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DelayKind {
    /// Always this long.
    Fixed(Duration),
    /// Uniform between `min` and `max`.
    Uniform {
        /// The shortest delay.
        min: Duration,
        /// The longest delay.
        max: Duration,
    },
    /// Exponentially distributed with this mean, cut at `max` so one draw cannot
    /// hold a request forever.
    Exponential {
        /// The mean delay.
        mean: Duration,
        /// The longest delay.
        max: Duration,
    },
}

/// How an aborted request ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortKind {
    /// With a [`FaultInjectedError`](crate::FaultInjectedError).
    Error,
    /// With a response of this HTTP status (through
    /// [`HttpFaultLayer`](crate::HttpFaultLayer); a plain
    /// [`FaultLayer`](crate::FaultLayer) ends such a request with an error).
    Status(u16),
}

/// Which faults a [`FaultLayer`](crate::FaultLayer) injects.
///
/// Each request independently draws whether it is delayed (with probability
/// `delay_percent`) and whether it is aborted (`abort_percent`); a request that is
/// both waits out its delay, then fails. The default injects nothing.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower_mesh_fault::{AbortKind, DelayKind, FaultConfig};
///
/// // Fail 5 % of requests with a 503 and slow 10 % by 200 ms.
/// let config = FaultConfig::builder()
///     .abort(5.0, AbortKind::Status(503))
///     .delay(10.0, DelayKind::Fixed(Duration::from_millis(200)))
///     .build()?;
/// assert_eq!(config.abort_percent(), 5.0);
///
/// let error = FaultConfig::builder().abort(120.0, AbortKind::Error).build().unwrap_err();
/// assert_eq!(error.field(), "abort");
/// # Ok::<(), tower_mesh_core::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FaultConfig {
    pub(crate) abort: Option<(f64, AbortKind)>,
    pub(crate) delay: Option<(f64, DelayKind)>,
}

impl FaultConfig {
    /// A builder starting from no faults.
    pub fn builder() -> FaultConfigBuilder {
        FaultConfigBuilder {
            config: FaultConfig::default(),
        }
    }

    /// No faults at all.
    pub fn none() -> Self {
        FaultConfig::default()
    }

    /// The share of requests aborted, in percent.
    pub fn abort_percent(&self) -> f64 {
        self.abort.map_or(0.0, |(percent, _)| percent)
    }

    /// The share of requests delayed, in percent.
    pub fn delay_percent(&self) -> f64 {
        self.delay.map_or(0.0, |(percent, _)| percent)
    }
}

/// Builds a [`FaultConfig`]; see [`FaultConfig::builder`].
#[derive(Debug, Clone)]
pub struct FaultConfigBuilder {
    config: FaultConfig,
}

impl FaultConfigBuilder {
    /// Aborts `percent` of requests, ending them as `kind` says.
    pub fn abort(mut self, percent: f64, kind: AbortKind) -> Self {
        self.config.abort = Some((percent, kind));
        self
    }

    /// Delays `percent` of requests by a duration drawn from `kind`.
    pub fn delay(mut self, percent: f64, kind: DelayKind) -> Self {
        self.config.delay = Some((percent, kind));
        self
    }

    /// Checks every value and returns the configuration.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `abort` or `delay` for a percentage outside
    /// `[0, 100]` (or NaN), an HTTP status outside `100..=999`, or delay bounds
    /// that are reversed.
    pub fn build(self) -> Result<FaultConfig, ConfigError> {
        if let Some((percent, kind)) = self.config.abort {
            check_percent("abort", percent)?;
            if let AbortKind::Status(status) = kind {
                if !(100..=999).contains(&status) {
                    let reason = format!("an HTTP status is in 100..=999, got {status}");
                    return Err(ConfigError::new("abort", reason));
                }
            }
        }
        if let Some((percent, kind)) = self.config.delay {
            check_percent("delay", percent)?;
            check_delay(kind)?;
        }
        Ok(self.config)
    }
}

fn check_percent(field: &'static str, percent: f64) -> Result<(), ConfigError> {
    if !(0.0..=100.0).contains(&percent) {
        let reason = format!("must be a percentage in [0, 100], got {percent}");
        return Err(ConfigError::new(field, reason));
    }
    Ok(())
}

fn check_delay(kind: DelayKind) -> Result<(), ConfigError> {
    let reversed = match kind {
        DelayKind::Fixed(_) => None,
        DelayKind::Uniform { min, max } => (min > max).then_some((min, max)),
        DelayKind::Exponential { mean, max } => (mean > max).then_some((mean, max)),
    };
    match reversed {
        Some((low, high)) => {
            let reason = format!("the lower bound {low:?} is above the upper bound {high:?}");
            Err(ConfigError::new("delay", reason))
        }
        None => Ok(()),
    }
}
