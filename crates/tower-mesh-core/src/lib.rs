//! The vocabulary every tower-mesh layer shares.
//!
//! A circuit breaker, a retry policy and the balancer's outlier detection all ask
//! the same question of a finished call: *did it succeed, fail, or should it not
//! count at all?* This crate gives that question one answer, the [`Classify`]
//! trait, so a rule written once ("a 503 is a failure, a 404 is not") applies to
//! every layer.
//!
//! It also holds the errors shared across crates: [`ConfigError`], which every
//! configuration builder returns, and the [`BoxError`] alias used at composed
//! boundaries.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tower_mesh_core::{classify_fn, Classify, ClassifyExt, ErrorsAsFailures, Outcome};
//!
//! // Every error is a failure, and so is a response that took longer than a second.
//! let too_slow = classify_fn(|_result: Result<&u16, &std::io::Error>, latency| {
//!     if latency > Duration::from_secs(1) { Outcome::Failure } else { Outcome::Success }
//! });
//! let classifier = ErrorsAsFailures.or(too_slow);
//!
//! let quick = Duration::from_millis(5);
//! let slow = Duration::from_secs(3);
//! assert_eq!(classifier.classify(Ok(&200), quick), Outcome::Success);
//! assert_eq!(classifier.classify(Ok(&200), slow), Outcome::Failure);
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, unreachable_pub, rust_2018_idioms)]

mod classify;
mod error;
pub mod random;

pub use classify::{
    classify_fn, classify_result_fn, Classify, ClassifyExt, ErrorsAsFailures, FnClassifier,
    Ignoring, Or, Outcome, ResultFnClassifier,
};
pub use error::{BoxError, ConfigError};
