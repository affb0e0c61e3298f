//! Retries with backoff, jitter and budgets, for tower services and plain async
//! functions.
//!
//! A [`RetryPolicy`] decides, after each failed attempt, whether to try again and
//! how long to wait first:
//!
//! - **which failures**: a [`Classify`](tower_mesh_core::Classify) classifier (the
//!   vocabulary the circuit breaker shares) says which calls failed, and a
//!   [`Retryable`] predicate which of those are worth another try. A call rejected
//!   by an open circuit breaker is never retried;
//! - **how long to wait**: a [`Backoff`] (constant, linear, exponential, full,
//!   equal or decorrelated jitter, or a function of the failed call), capped, with
//!   optional proportional jitter; [`RetryPolicy::get_delay`] shows the schedule;
//! - **how much**: an attempt limit, an overall deadline after which no retry
//!   starts, and a [`RetryBudget`] shared by every clone of the policy, which caps
//!   the extra load retries add.
//!
//! When no retry is left, the last outcome is returned as it is: errors are never
//! wrapped. Use a policy three ways:
//!
//! - as tower middleware, with [`RetryLayer`];
//! - around a closure, with [`RetryPolicy::execute`], or around an async function
//!   with [`with_retry`];
//! - as a [`tower::retry::Policy`] for `tower::retry::Retry`.
//!
//! # Example
//!
//! ```
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//! use tower_mesh_retry::{Backoff, RetryBudget, RetryLayer, RetryPolicy};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tower_mesh_core::BoxError> {
//! let policy = RetryPolicy::builder()
//!     .max_retries(2)
//!     .backoff(Backoff::equal_jitter(Duration::from_millis(20), 2.0))
//!     .max_delay(Duration::from_millis(500))
//!     .budget(RetryBudget::default())
//!     .build()?;
//!
//! let attempts = Arc::new(AtomicU32::new(0));
//! let seen = attempts.clone();
//! let service = ServiceBuilder::new()
//!     .layer(RetryLayer::new(policy))
//!     .service(service_fn(move |name: &'static str| {
//!         let attempt = seen.fetch_add(1, Ordering::Relaxed);
//!         async move {
//!             match attempt {
//!                 0 => Err("connection reset"),
//!                 _ => Ok(format!("hello, {name}")),
//!             }
//!         }
//!     }));
//!
//! assert_eq!(service.oneshot("ada").await?, "hello, ada");
//! assert_eq!(attempts.load(Ordering::Relaxed), 2);
//! # Ok(()) }
//! ```
//!
//! # Logging and metrics
//!
//! Each retry is a `tracing` `debug!` event with the fields `policy` (the
//! policy's [name](RetryPolicyBuilder::name)), `attempt` (the attempt about to be
//! sent, the first being 1), `delay` and `reason` (`"error"` or
//! `"failed response"`). Each give-up is a `debug!` event with `policy`,
//! `attempts` and `reason` (`"retries exhausted"`, `"deadline"`,
//! `"budget exhausted"`, `"not retryable"`, `"circuit open"`,
//! `"request not replayable"`); a budget refusal logs one more event of its own.
//! Nothing is logged when the first attempt succeeds.
//!
//! With the `metrics` feature these counters are kept through the `metrics` crate:
//!
//! - `tower_mesh_retry_attempts_total{policy}`: every attempt, first or retry;
//! - `tower_mesh_retry_retries_total{policy}`;
//! - `tower_mesh_retry_budget_refusals_total{policy}`;
//! - `tower_mesh_retry_give_ups_total{policy, reason}`.
//!
//! The attempt counter is the one update made when the first attempt succeeds.
//! Each update names the policy in its label set, which the `metrics` macros build
//! afresh (one small allocation), so with the feature on that path allocates.

#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, unreachable_pub, rust_2018_idioms)]

mod backoff;
mod budget;
mod function;
mod policy;
mod report;
mod retryable;
mod service;
mod settings;
mod tower_policy;

pub use backoff::Backoff;
pub use budget::{RetryBudget, RetryBudgetBuilder};
pub use function::{with_retry, Retrying};
pub use policy::{RetryPolicy, RetryPolicyBuilder};
pub use retryable::{
    is_circuit_open, AnyFailure, CloneRequest, DelayFn, ReplayRequest, ReplayWith, RetryDecision,
    RetryIf, Retryable,
};
pub use service::{ResponseFuture, Retry, RetryLayer};
pub use tower_policy::Delay;
