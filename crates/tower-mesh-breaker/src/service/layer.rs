use tower_layer::Layer;
use tower_mesh_core::ErrorsAsFailures;

use super::CircuitBreakerService;
use crate::CircuitBreaker;

/// Guards services with one shared [`CircuitBreaker`].
///
/// Every service this layer makes, and every clone of those, reports to the same
/// breaker: applying the layer twice, or cloning per request, never splits the
/// state. Make a new layer with a new breaker for independent protection.
///
/// # Example
///
/// ```
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
/// use tower_mesh_breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_mesh_core::BoxError> {
/// let breaker = CircuitBreaker::new("users", CircuitBreakerConfig::default());
/// let service = ServiceBuilder::new()
///     .layer(CircuitBreakerLayer::new(breaker.clone()))
///     .service(service_fn(|id: u32| async move { Ok::<_, std::io::Error>(id * 2) }));
///
/// assert_eq!(service.oneshot(21).await?, 42);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct CircuitBreakerLayer<C = ErrorsAsFailures> {
    breaker: CircuitBreaker,
    classifier: C,
}

impl CircuitBreakerLayer {
    /// A layer feeding `breaker`, counting every error as a failure.
    pub fn new(breaker: CircuitBreaker) -> Self {
        CircuitBreakerLayer {
            breaker,
            classifier: ErrorsAsFailures,
        }
    }
}

impl<C> CircuitBreakerLayer<C> {
    /// Judges outcomes with `classifier` instead (for example, to count HTTP 5xx
    /// responses as failures).
    pub fn with_classifier<C2>(self, classifier: C2) -> CircuitBreakerLayer<C2> {
        CircuitBreakerLayer {
            breaker: self.breaker,
            classifier,
        }
    }

    /// The breaker this layer feeds.
    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreakerService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreakerService::new(inner, self.breaker.clone(), self.classifier.clone())
    }
}
