//! A load balancer over a tower `Discover` stream, with strategies and instance
//! health.
//!
//! - [`ServiceInstance`] describes an endpoint; [`ServiceRegistry`] keeps
//!   instances with health flags and picks one by [`LoadBalancerStrategy`]
//!   without tower, and is also a discovery source.
//! - [`LoadBalancer`] is the `tower::Service` that spreads calls over the
//!   endpoints of any [`tower::discover::Discover`] stream, with per-endpoint
//!   outlier detection (a [`tower_mesh_breaker::CircuitBreaker`] each), active
//!   health checks ([`HealthCheck`], [`TcpConnectCheck`]), manual marks
//!   ([`HealthControl`]), a maximum ejection percentage and a panic threshold.
//! - A call no endpoint can take fails with [`NoHealthyInstanceError`], at once or
//!   after a configured wait: the balancer never hangs silently.
//!
//! # Example
//!
//! ```
//! use tower::{service_fn, Service, ServiceExt};
//! use tower_mesh_balance::{
//!     InstanceKey, LoadBalancer, LoadBalancerStrategy, NoHealthyInstanceError, ServiceInstance,
//!     ServiceRegistry,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_mesh_core::BoxError> {
//! let registry = ServiceRegistry::new(LoadBalancerStrategy::Weighted);
//! let discover = registry.discover(|instance: &ServiceInstance| {
//!     let port = instance.port;
//!     service_fn(move |path: &'static str| async move {
//!         Ok::<_, std::io::Error>(format!("{path} served by :{port}"))
//!     })
//! });
//! let mut balancer = LoadBalancer::builder(discover)
//!     .strategy(LoadBalancerStrategy::Weighted)
//!     .weight_by(InstanceKey::weight)
//!     .build()?;
//!
//! // Nothing registered yet: the call fails fast instead of hanging.
//! let error = balancer.ready().await?.call("/").await.unwrap_err();
//! assert!(error.downcast_ref::<NoHealthyInstanceError>().is_some());
//!
//! // Instances registered at run time flow into the balancer.
//! registry.register(ServiceInstance::new("a", "10.0.0.1", 8001).with_weight(2))?;
//! registry.register(ServiceInstance::new("b", "10.0.0.2", 8002))?;
//! let mut served = Vec::new();
//! for _ in 0..3 {
//!     served.push(balancer.ready().await?.call("/").await?);
//! }
//! assert_eq!(served.iter().filter(|s| s.ends_with(":8001")).count(), 2);
//! # Ok(()) }
//! ```
//!
//! # Logging and metrics
//!
//! Endpoints added, removed, taken out of rotation, ejected and restored are
//! `tracing` `debug!` events carrying the endpoint's key; each dispatched call is a
//! `trace!` event, and a failing discovery stream a `warn!`. With the `metrics`
//! feature, every endpoint also reports, labelled `endpoint` (its key, as `Debug`):
//!
//! - `tower_mesh_balance_requests_total` (counter): calls sent to it,
//! - `tower_mesh_balance_in_flight` (gauge): calls not finished yet,
//! - `tower_mesh_balance_healthy` (gauge): 1 while in rotation, 0 otherwise.

#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, unreachable_pub, rust_2018_idioms)]

mod balancer;
mod check;
mod error;
mod instance;
mod rand;
mod registry;
mod shared;
mod strategy;

pub use balancer::{
    DiscoveryFailure, EndpointStatus, HealthControl, LoadBalancer, LoadBalancerBuilder,
    ResponseFuture,
};
pub use check::{
    ActiveHealthCheck, ActiveHealthCheckBuilder, CheckFuture, HealthCheck, TcpConnectCheck,
};
pub use error::{BalancerPanickedError, NoHealthyInstanceError};
pub use instance::{InstanceKey, ServiceInstance};
pub use registry::{MakeEndpoint, RegistryDiscover, ServiceRegistry};
pub use shared::{SharedBalancer, SharedFuture};
pub use strategy::{EndpointView, LoadBalancerStrategy, SelectEndpoint};

/// The error type of [`LoadBalancer`]; re-exported from `tower-mesh-core`.
pub use tower_mesh_core::BoxError;
