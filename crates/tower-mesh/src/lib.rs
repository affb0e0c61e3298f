//! Client-side resilience for tower services, in one crate.
//!
//! `tower-mesh` puts the tower-mesh crates behind one dependency and composes
//! them into a [`ServiceProxy`]: a named stack of an overall timeout, retries
//! with a budget, a service-wide circuit breaker, a per-attempt timeout, and a
//! load balancer whose endpoints each have their own breaker (outlier detection)
//! and active health checks. Everything is plain tower underneath: the same layers
//! stack by hand with [`ServiceBuilderExt`], and every crate can be used alone.
//!
//! | module | crate | feature |
//! |---|---|---|
//! | [`core`] | `tower-mesh-core`: `Classify`, `Outcome`, `ConfigError`, `BoxError` | always |
//! | `breaker` | `tower-mesh-breaker` | `breaker` (default) |
//! | `retry` | `tower-mesh-retry` | `retry` (default) |
//! | `balance` | `tower-mesh-balance` | `balance` (default) |
//! | `discover` | `tower-mesh-discover` (static lists; DNS with `dns`) | `discover` |
//! | `http` | `tower-mesh-http` (hyper-util endpoints with `client`) | `http` |
//! | `fault` | `tower-mesh-fault`: injected errors and delays, for tests and staging | `fault` |
//!
//! [`ServiceProxy`] needs `retry` and `balance`. `http` is off by default, so a
//! service that is not HTTP compiles no HTTP code; `client` adds hyper and
//! hyper-util. `metrics` turns on the `metrics` feature of every crate included.
//!
//! # Example
//!
//! A proxy over two instances, one of which refuses every call: retries send
//! the failed calls to the other, and its breaker ejects the bad one.
//!
//! ```
//! # #[cfg(all(feature = "retry", feature = "balance"))]
//! # mod example {
//! use std::time::Duration;
//! use tower::service_fn;
//! use tower_mesh::prelude::*;
//!
//! # pub async fn run() -> Result<(), BoxError> {
//! let registry = ServiceRegistry::new(LoadBalancerStrategy::RoundRobin);
//! registry.register(ServiceInstance::new("good", "10.0.0.1", 80))?;
//! registry.register(ServiceInstance::new("bad", "10.0.0.2", 80))?;
//! let discover = registry.discover(|instance: &ServiceInstance| {
//!     let down = instance.id == "bad";
//!     service_fn(move |sku: &'static str| async move {
//!         if down {
//!             return Err(std::io::Error::other("connection refused"));
//!         }
//!         Ok(format!("{sku}: 3 in stock"))
//!     })
//! });
//!
//! let proxy = ServiceProxy::builder("inventory")
//!     .timeout(Duration::from_secs(2))
//!     .retry(RetryPolicy::builder().max_retries(2).budget(RetryBudget::default()).build()?)
//!     .outlier_detection(CircuitBreakerConfig::builder().failure_threshold(3).build()?)
//!     .build(discover)?;
//!
//! for _ in 0..10 {
//!     assert_eq!(proxy.call("sku-1").await?, "sku-1: 3 in stock");
//! }
//! assert!(proxy.stats().retries >= 1, "the calls sent to `bad` were retried");
//! # Ok(())
//! # }
//! # }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_mesh::core::BoxError> {
//! # #[cfg(all(feature = "retry", feature = "balance"))]
//! # example::run().await?;
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, unreachable_pub, rust_2018_idioms)]

mod ext;
#[cfg(all(feature = "retry", feature = "balance"))]
mod proxy;

pub use ext::ServiceBuilderExt;
#[cfg(all(feature = "retry", feature = "balance"))]
pub use proxy::{
    BalancerHealth, EndpointHealth, HealthChange, HealthEvent, NoHealthCheck, ProxyFuture,
    ProxyHealthCheck, ProxyStats, ServiceProxy, ServiceProxyBuilder, WatchedBalancer,
    WithHealthCheck,
};

/// Outcome classification and the errors every layer shares (`tower-mesh-core`).
pub mod core {
    pub use tower_mesh_core::*;
}

/// The circuit breaker (`tower-mesh-breaker`).
#[cfg(feature = "breaker")]
pub mod breaker {
    pub use tower_mesh_breaker::*;
}

/// Retries with backoff, jitter and budgets (`tower-mesh-retry`).
#[cfg(feature = "retry")]
pub mod retry {
    pub use tower_mesh_retry::*;
}

/// The load balancer, strategies, instances and health (`tower-mesh-balance`).
#[cfg(feature = "balance")]
pub mod balance {
    pub use tower_mesh_balance::*;
}

/// Discovery sources beyond one process (`tower-mesh-discover`).
#[cfg(feature = "discover")]
pub mod discover {
    pub use tower_mesh_discover::*;
}

/// Fault injection for tests and staging (`tower-mesh-fault`).
#[cfg(feature = "fault")]
pub mod fault {
    pub use tower_mesh_fault::*;
}

/// HTTP and gRPC awareness (`tower-mesh-http`).
#[cfg(feature = "http")]
pub mod http {
    pub use tower_mesh_http::*;
}

/// The names most programs need, for a glob import.
///
/// ```
/// use tower_mesh::prelude::*;
/// # let _ = ErrorsAsFailures;
/// ```
pub mod prelude {
    pub use crate::ServiceBuilderExt;
    pub use tower_mesh_core::{BoxError, Classify, ConfigError, ErrorsAsFailures, Outcome};

    #[cfg(feature = "breaker")]
    pub use tower_mesh_breaker::{
        CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, CircuitOpenError, CircuitState,
        SlidingWindow,
    };

    #[cfg(feature = "retry")]
    pub use tower_mesh_retry::{Backoff, RetryBudget, RetryLayer, RetryPolicy};

    #[cfg(feature = "balance")]
    pub use tower_mesh_balance::{
        ActiveHealthCheck, InstanceKey, LoadBalancer, LoadBalancerStrategy, NoHealthyInstanceError,
        ServiceInstance, ServiceRegistry, SharedBalancer,
    };

    #[cfg(all(feature = "retry", feature = "balance"))]
    pub use crate::{ServiceProxy, ServiceProxyBuilder};

    #[cfg(feature = "http")]
    pub use tower_mesh_http::{GrpcClassifier, HttpReplay, RetryAfter, StatusClassifier};

    #[cfg(feature = "client")]
    pub use tower_mesh_http::{HttpHealthCheck, MakeHttpEndpoint};
}
