use tower_layer::Layer;
use tower_mesh_core::ErrorsAsFailures;

use super::Retry;
use crate::retryable::{AnyFailure, CloneRequest};
use crate::RetryPolicy;

/// Retries failed calls by a [`RetryPolicy`].
///
/// Every service the layer makes shares the policy's budget: applying the layer
/// to several services, or cloning those, spends one budget.
///
/// # Example
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::sync::Arc;
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
/// use tower_mesh_retry::{RetryLayer, RetryPolicy};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let calls = Arc::new(AtomicU32::new(0));
/// let counter = calls.clone();
/// let service = ServiceBuilder::new()
///     .layer(RetryLayer::new(RetryPolicy::default()))
///     .service(service_fn(move |id: u32| {
///         let failed_before = counter.fetch_add(1, Ordering::Relaxed) > 0;
///         async move { if failed_before { Ok(id) } else { Err("connection reset") } }
///     }));
///
/// assert_eq!(service.oneshot(7).await, Ok(7));
/// assert_eq!(calls.load(Ordering::Relaxed), 2, "one failure, one retry");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RetryLayer<C = ErrorsAsFailures, R = AnyFailure, K = CloneRequest> {
    policy: RetryPolicy<C, R, K>,
}

impl<C, R, K> RetryLayer<C, R, K> {
    /// A layer retrying by `policy`.
    pub fn new(policy: RetryPolicy<C, R, K>) -> Self {
        RetryLayer { policy }
    }

    /// The policy the layer's services retry by.
    pub fn policy(&self) -> &RetryPolicy<C, R, K> {
        &self.policy
    }
}

impl<S, C: Clone, R: Clone, K: Clone> Layer<S> for RetryLayer<C, R, K> {
    type Service = Retry<S, C, R, K>;

    fn layer(&self, inner: S) -> Self::Service {
        Retry::new(inner, self.policy.clone())
    }
}
