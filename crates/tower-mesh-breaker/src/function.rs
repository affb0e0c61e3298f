//! [`with_circuit_breaker`]: breaker protection for a plain async function.

use std::fmt;
use std::future::Future;

use tower_mesh_core::ErrorsAsFailures;

use crate::{CircuitBreaker, CircuitBreakerConfig, CircuitError};

/// Wraps an async function so that a new breaker named `name` guards every call.
///
/// The function takes one argument (use a tuple for several, `()` for none) and
/// returns a `Result`; every `Err` counts as a failure. The wrapper is cheap to
/// clone and every clone shares the breaker.
///
/// # Example
///
/// ```
/// use tower_mesh_breaker::{with_circuit_breaker, CircuitBreakerConfig, CircuitError};
///
/// async fn fetch_price(sku: &'static str) -> Result<u32, std::io::Error> {
///     Ok(if sku == "apple" { 3 } else { 5 })
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let fetch_price = with_circuit_breaker("prices", CircuitBreakerConfig::default(), fetch_price);
/// assert_eq!(fetch_price.call("apple").await.unwrap(), 3);
///
/// fetch_price.breaker().force_open();
/// assert!(matches!(fetch_price.call("pear").await, Err(CircuitError::Open(_))));
/// # }
/// ```
pub fn with_circuit_breaker<F>(
    name: &str,
    config: CircuitBreakerConfig,
    function: F,
) -> Guarded<F> {
    Guarded::new(CircuitBreaker::new(name, config), function)
}

/// An async function guarded by a circuit breaker. Made by [`with_circuit_breaker`].
#[derive(Clone)]
pub struct Guarded<F> {
    breaker: CircuitBreaker,
    function: F,
}

impl<F> Guarded<F> {
    /// Guards `function` with an existing breaker, for example one shared with a
    /// tower stack.
    pub fn new(breaker: CircuitBreaker, function: F) -> Self {
        Guarded { breaker, function }
    }

    /// The guarding breaker.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// Calls the function if the breaker admits the call.
    ///
    /// # Errors
    ///
    /// [`CircuitError::Open`] when the breaker rejects the call (the function is
    /// then not called), or [`CircuitError::Inner`] with the function's error.
    pub async fn call<A, T, E, Fut>(&self, argument: A) -> Result<T, CircuitError<E>>
    where
        F: Fn(A) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let permit = self.breaker.try_acquire().map_err(CircuitError::Open)?;
        let call = (self.function)(argument);
        let result = self
            .breaker
            .run_admitted(permit, ErrorsAsFailures, call)
            .await;
        result.map_err(CircuitError::Inner)
    }
}

impl<F> fmt::Debug for Guarded<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guarded")
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}
