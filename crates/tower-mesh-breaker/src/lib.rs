//! A circuit breaker for tower services and plain async functions.
//!
//! A [`CircuitBreaker`] watches the outcomes of calls to a dependency. While the
//! dependency is healthy the circuit is *closed* and calls flow. When failures
//! pile up (a run of consecutive failures, a failure rate or a slow-call rate over
//! a [`SlidingWindow`]) it *opens* and rejects calls at once with
//! [`CircuitOpenError`], sparing both sides. After
//! [`open_duration`](CircuitBreakerConfig::open_duration) it turns *half-open* and
//! lets a few probes through: enough successes close it, a failure opens it again
//! (for longer, if the open duration grows).
//!
//! ```text
//!            failures trip            open duration passes
//!   Closed ──────────────────▶ Open ─────────────────────▶ HalfOpen
//!     ▲                         ▲                             │
//!     │                         └──── a probe fails ──────────┤
//!     └──────────── enough probes succeed ────────────────────┘
//! ```
//!
//! The breaker is shared state: clone it freely, every clone is the same breaker.
//! Use it three ways:
//!
//! - as tower middleware, with [`CircuitBreakerLayer`];
//! - around any future, with [`CircuitBreaker::execute`], or around an async
//!   function with [`with_circuit_breaker`];
//! - by hand, with [`CircuitBreaker::try_acquire`] and the [`Permit`] it returns.
//!
//! Outcomes are judged by a [`Classify`](tower_mesh_core::Classify) classifier,
//! the same vocabulary the rest of tower-mesh uses.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_mesh_breaker::{
//!     CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, CircuitOpenError,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_mesh_core::ConfigError> {
//! let config = CircuitBreakerConfig::builder()
//!     .failure_threshold(2)
//!     .open_duration(Duration::from_secs(5))
//!     .build()?;
//! let breaker = CircuitBreaker::new("flaky", config);
//! let service = ServiceBuilder::new()
//!     .layer(CircuitBreakerLayer::new(breaker.clone()))
//!     .service(service_fn(|_: ()| async { Err::<(), _>(std::io::Error::other("down")) }));
//!
//! // Two failures trip the breaker; the third call never reaches the service.
//! for _ in 0..2 {
//!     assert!(service.clone().oneshot(()).await.is_err());
//! }
//! let error = service.oneshot(()).await.unwrap_err();
//! assert!(error.downcast_ref::<CircuitOpenError>().is_some());
//! # Ok(()) }
//! ```
//!
//! # Logging and metrics
//!
//! Every state change is a `tracing` `debug!` event carrying the breaker's name,
//! and every rejection a `trace!` event. With the `metrics` feature, state changes
//! and rejections also update, through the `metrics` crate:
//!
//! - `tower_mesh_breaker_transitions_total{breaker, from, to}` (counter),
//! - `tower_mesh_breaker_state{breaker}` (gauge: 0 closed, 1 open, 2 half-open,
//!   3 forced open, 4 disabled, 5 metrics only),
//! - `tower_mesh_breaker_rejected_total{breaker}` (counter).

#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, unreachable_pub, rust_2018_idioms)]

mod breaker;
mod config;
mod error;
mod function;
mod permit;
mod service;
mod state;
mod streak;
mod sync;
mod transition;
mod window;

pub use breaker::{CircuitBreaker, CircuitMetrics};
pub use config::{
    CircuitBreakerConfig, CircuitBreakerConfigBuilder, OpenBackoff, SlidingWindow, MAX_WINDOW_CALLS,
};
pub use error::{CircuitError, CircuitOpenError};
pub use function::{with_circuit_breaker, Guarded};
pub use permit::Permit;
pub use service::{CircuitBreakerLayer, CircuitBreakerService, ResponseFuture};
pub use state::CircuitState;
pub use transition::StateTransition;

/// The error type of [`CircuitBreakerService`]; re-exported from `tower-mesh-core`.
pub use tower_mesh_core::BoxError;
