//! Fault injection for tower services, in the spirit of Envoy's fault filter:
//! abort a share of requests with an error (or, for HTTP, a status code), delay a
//! share by a fixed, uniform or exponential time.
//!
//! **Meant for tests and staging**: it proves that a stack's retries, breakers and
//! balancer cope with failure. Faults are drawn from a seedable generator, so a
//! chaos run repeats exactly, and a [`FaultHandle`] changes them while traffic
//! flows.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_mesh_fault::{DelayKind, FaultConfig, FaultHandle, FaultLayer};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tower_mesh_core::BoxError> {
//! let slow = FaultConfig::builder()
//!     .delay(100.0, DelayKind::Fixed(Duration::from_secs(1)))
//!     .build()?;
//! let faults = FaultHandle::with_seed(slow, 7);
//! let service = ServiceBuilder::new()
//!     .layer(FaultLayer::new(faults.clone()))
//!     .service(service_fn(|x: u32| async move { Ok::<_, std::io::Error>(x) }));
//!
//! let started = tokio::time::Instant::now();
//! assert_eq!(service.oneshot(3).await?, 3);
//! assert_eq!(started.elapsed(), Duration::from_secs(1));
//! assert_eq!(faults.stats().delayed, 1);
//! # Ok(()) }
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, unreachable_pub, rust_2018_idioms)]

mod config;
mod error;
mod handle;
mod service;

pub use config::{AbortKind, DelayKind, FaultConfig, FaultConfigBuilder};
pub use error::FaultInjectedError;
pub use handle::{FaultHandle, FaultStats};
pub use service::{Abort, AbortWithError, Fault, FaultLayer, ResponseFuture};
#[cfg(feature = "http")]
pub use service::{AbortWithStatus, HttpFaultLayer};
