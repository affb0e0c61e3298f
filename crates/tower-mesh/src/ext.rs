//! [`ServiceBuilderExt`]: tower-mesh layers as `ServiceBuilder` methods.

use tower::ServiceBuilder;
#[cfg(any(feature = "breaker", feature = "retry"))]
use tower_layer::Stack;

#[cfg(feature = "breaker")]
use tower_mesh_breaker::{CircuitBreaker, CircuitBreakerLayer};
#[cfg(feature = "retry")]
use tower_mesh_retry::{RetryLayer, RetryPolicy};

/// Adds tower-mesh's layers to [`tower::ServiceBuilder`], the way tower's own
/// methods (`timeout`, `buffer`, ...) add tower's.
///
/// Each method wraps the builder's layers in a [`Stack`], so the layer it adds
/// sits *inside* the ones added before it: the first method called is the
/// outermost layer, as with every `ServiceBuilder` method.
///
/// # A note on `retry`
///
/// `ServiceBuilder` has an inherent `retry` method (tower's `retry` feature, which
/// tower-mesh-retry turns on), and an inherent method always wins over a trait
/// method of the same name. The method here is therefore
/// [`retry_policy`](Self::retry_policy). Passing a [`RetryPolicy`] to tower's own
/// `.retry(..)` also works, since a policy is a `tower::retry::Policy`: the
/// difference is that [`RetryLayer`] sends retries on a service it already polled
/// ready and skips work when the first attempt succeeds.
///
/// # Example
///
/// ```
/// # #[cfg(all(feature = "breaker", feature = "retry"))]
/// # mod example {
/// use std::time::Duration;
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
/// use tower_mesh::prelude::*;
///
/// # pub async fn run() -> Result<(), BoxError> {
/// let breaker = CircuitBreaker::new("users", CircuitBreakerConfig::default());
/// let service = ServiceBuilder::new()
///     .timeout(Duration::from_secs(1))
///     .retry_policy(RetryPolicy::builder().max_retries(2).build()?)
///     .circuit_breaker(breaker.clone())
///     .service(service_fn(|id: u32| async move { Ok::<_, BoxError>(id + 1) }));
///
/// assert_eq!(service.oneshot(41).await?, 42);
/// assert_eq!(breaker.state(), CircuitState::Closed);
/// # Ok(())
/// # }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_mesh::core::BoxError> {
/// # #[cfg(all(feature = "breaker", feature = "retry"))]
/// # example::run().await?;
/// # Ok(())
/// # }
/// ```
pub trait ServiceBuilderExt<L>: sealed::Sealed {
    /// Guards the inner service with `breaker`, counting every error as a
    /// failure; see [`CircuitBreakerLayer`].
    ///
    /// Every service made by the returned builder, and every clone of those,
    /// feeds the same breaker.
    #[cfg(feature = "breaker")]
    fn circuit_breaker(
        self,
        breaker: CircuitBreaker,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer, L>>;

    /// Guards the inner service with `breaker`, judging outcomes with
    /// `classifier` (for example, to count HTTP `503`s as failures).
    #[cfg(feature = "breaker")]
    fn circuit_breaker_with<C>(
        self,
        breaker: CircuitBreaker,
        classifier: C,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer<C>, L>>;

    /// Retries failed calls by `policy`; see [`RetryLayer`].
    ///
    /// Put it outside [`circuit_breaker`](Self::circuit_breaker): a call rejected
    /// by an open breaker is then returned at once instead of retried.
    #[cfg(feature = "retry")]
    fn retry_policy<C, R, K>(
        self,
        policy: RetryPolicy<C, R, K>,
    ) -> ServiceBuilder<Stack<RetryLayer<C, R, K>, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    #[cfg(feature = "breaker")]
    fn circuit_breaker(
        self,
        breaker: CircuitBreaker,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer, L>> {
        self.layer(CircuitBreakerLayer::new(breaker))
    }

    #[cfg(feature = "breaker")]
    fn circuit_breaker_with<C>(
        self,
        breaker: CircuitBreaker,
        classifier: C,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer<C>, L>> {
        self.layer(CircuitBreakerLayer::new(breaker).with_classifier(classifier))
    }

    #[cfg(feature = "retry")]
    fn retry_policy<C, R, K>(
        self,
        policy: RetryPolicy<C, R, K>,
    ) -> ServiceBuilder<Stack<RetryLayer<C, R, K>, L>> {
        self.layer(RetryLayer::new(policy))
    }
}

mod sealed {
    /// Only `tower::ServiceBuilder` gets the extension methods.
    pub trait Sealed {}

    impl<L> Sealed for tower::ServiceBuilder<L> {}
}
