use std::borrow::Cow;
use std::fmt;

/// The error type at composed boundaries: every layer that merges error sources
/// returns this, and callers `downcast_ref` to the concrete types each layer
/// documents.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A configuration value was rejected by a builder.
///
/// Every tower-mesh builder validates what it is given and returns this error
/// instead of panicking. [`field`](ConfigError::field) names the offending
/// setting exactly as the builder method is spelled, so the message points at the
/// line to fix.
///
/// # Example
///
/// ```
/// use tower_mesh_core::ConfigError;
///
/// let error = ConfigError::new("failure_rate_threshold", "must be in (0, 100], got 150");
/// assert_eq!(error.field(), "failure_rate_threshold");
/// assert_eq!(
///     error.to_string(),
///     "invalid `failure_rate_threshold`: must be in (0, 100], got 150",
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    field: &'static str,
    reason: Cow<'static, str>,
}

impl ConfigError {
    /// Creates an error for `field`, explaining in `reason` what is wrong with it.
    pub fn new(field: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        ConfigError {
            field,
            reason: reason.into(),
        }
    }

    /// The name of the rejected setting.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// Why the value was rejected.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid `{}`: {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}
