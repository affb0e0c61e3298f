//! [`with_retry`]: retries for a plain async function.

use std::fmt;
use std::future::Future;

use tower_mesh_core::Classify;

use crate::retryable::Retryable;
use crate::RetryPolicy;

/// Wraps an async function so that every call is retried by `policy`.
///
/// The function takes one argument (a tuple for several, `()` for none), which is
/// cloned for each attempt, and returns a `Result`. Clones of the wrapper share
/// the policy's budget.
///
/// # Example
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use tower_mesh_retry::{with_retry, RetryPolicy};
///
/// static CALLS: AtomicU32 = AtomicU32::new(0);
///
/// async fn fetch_stock(sku: &'static str) -> Result<u32, String> {
///     if CALLS.fetch_add(1, Ordering::Relaxed) == 0 {
///         return Err(format!("timed out looking up {sku}"));
///     }
///     Ok(12)
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let fetch_stock = with_retry(RetryPolicy::default(), fetch_stock);
/// assert_eq!(fetch_stock.call("apple").await, Ok(12));
/// assert_eq!(CALLS.load(Ordering::Relaxed), 2);
/// # }
/// ```
pub fn with_retry<F, C, R, K>(policy: RetryPolicy<C, R, K>, function: F) -> Retrying<F, C, R, K> {
    Retrying { policy, function }
}

/// An async function whose calls are retried. Made by [`with_retry`].
#[derive(Clone)]
pub struct Retrying<F, C, R, K> {
    policy: RetryPolicy<C, R, K>,
    function: F,
}

impl<F, C, R, K> Retrying<F, C, R, K> {
    /// The retry policy.
    pub fn policy(&self) -> &RetryPolicy<C, R, K> {
        &self.policy
    }

    /// Calls the function with `argument`, retrying by the policy.
    ///
    /// # Errors
    ///
    /// The last attempt's error, unchanged, when no retry is left.
    ///
    /// # Cancel safety
    ///
    /// As for [`RetryPolicy::execute`]: dropping the future cancels the attempt in
    /// flight or the pending delay.
    pub async fn call<A, T, E, Fut>(&self, argument: A) -> Result<T, E>
    where
        A: Clone,
        F: Fn(A) -> Fut,
        Fut: Future<Output = Result<T, E>>,
        C: Classify<T, E> + Clone,
        R: Retryable<T, E> + Clone,
        K: Clone,
        E: 'static,
    {
        self.policy
            .execute(|| (self.function)(argument.clone()))
            .await
    }
}

impl<F, C, R, K> fmt::Debug for Retrying<F, C, R, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Retrying")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}
