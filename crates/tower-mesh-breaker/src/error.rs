//! The errors a protected call can end with.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::CircuitState;

/// A call was rejected because the circuit does not admit calls right now.
///
/// This is the error to `downcast_ref` to when a call through a
/// [`CircuitBreakerLayer`](crate::CircuitBreakerLayer) fails fast:
///
/// ```
/// use tower_mesh_breaker::CircuitOpenError;
/// # fn check(error: &tower_mesh_core::BoxError) {
/// if let Some(open) = error.downcast_ref::<CircuitOpenError>() {
///     eprintln!("{} rejected the call; retry in {:?}", open.name(), open.retry_after());
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CircuitOpenError {
    name: Arc<str>,
    state: CircuitState,
    retry_after: Option<Duration>,
}

impl CircuitOpenError {
    pub(crate) fn new(name: Arc<str>, state: CircuitState, retry_after: Option<Duration>) -> Self {
        CircuitOpenError {
            name,
            state,
            retry_after,
        }
    }

    /// The name of the breaker that rejected the call.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The state the breaker was in: open, half-open with every probe slot taken,
    /// or forced open.
    pub fn state(&self) -> CircuitState {
        self.state
    }

    /// How long until the breaker lets a probe through, when that is known.
    ///
    /// `None` when the breaker is forced open (it waits for a manual reset) or
    /// half-open with all its probes in flight (it waits for their outcomes).
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for CircuitOpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "circuit breaker `{}` is {}", self.name, self.state)?;
        match (self.state, self.retry_after) {
            (_, Some(wait)) => write!(f, "; probes resume in {wait:?}"),
            (CircuitState::HalfOpen, None) => f.write_str("; every probe slot is taken"),
            _ => f.write_str("; it stays open until reset"),
        }
    }
}

impl std::error::Error for CircuitOpenError {}

/// The error of a call made through [`CircuitBreaker::execute`](crate::CircuitBreaker::execute)
/// or [`with_circuit_breaker`](crate::with_circuit_breaker): either the breaker
/// rejected it, or the call ran and failed.
#[derive(Debug)]
pub enum CircuitError<E> {
    /// The breaker rejected the call; the call was never started.
    Open(CircuitOpenError),
    /// The call ran and returned this error.
    Inner(E),
}

impl<E> CircuitError<E> {
    /// The call's own error, if it ran.
    pub fn into_inner(self) -> Option<E> {
        match self {
            CircuitError::Open(_) => None,
            CircuitError::Inner(error) => Some(error),
        }
    }

    /// `true` when the breaker rejected the call.
    pub fn is_open(&self) -> bool {
        matches!(self, CircuitError::Open(_))
    }
}

impl<E: fmt::Display> fmt::Display for CircuitError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CircuitError::Open(open) => open.fmt(f),
            CircuitError::Inner(error) => error.fmt(f),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for CircuitError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CircuitError::Open(open) => Some(open),
            CircuitError::Inner(error) => Some(error),
        }
    }
}
