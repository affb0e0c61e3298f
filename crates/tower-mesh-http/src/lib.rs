//! HTTP and gRPC awareness for tower-mesh.
//!
//! The other crates speak of calls in general; this one knows what an HTTP
//! exchange means:
//!
//! - **classifiers** ([`StatusClassifier`], [`GrpcClassifier`]) tell the breaker,
//!   the retry policy and outlier detection which responses are failures: `5xx`, or
//!   only gateway errors, optionally `429`, or gRPC status codes, and
//!   [`GrpcCircuitBreakerLayer`] judges gRPC calls by the status in their trailers;
//! - **`Retry-After`** is parsed in both its forms ([`parse_retry_after`]) and
//!   honoured by a retry policy through [`RetryAfter`], capped by a maximum;
//! - **replay**: [`HttpReplay`] lets a retry resend only idempotent requests
//!   (others on request), and [`BufferRequestBodyLayer`] keeps bodies up to a size
//!   limit in memory so they can be sent again, while a larger or streaming body is
//!   sent once;
//! - **clients** (feature `client`): [`MakeHttpEndpoint`] turns each discovered
//!   instance into an [`HttpEndpoint`] over hyper-util's pooled client, and
//!   [`HttpHealthCheck`] and [`GrpcHealthCheck`] give the balancer's active checks.
//!
//! # Example
//!
//! A retry policy for HTTP: retry gateway errors of idempotent requests, honour
//! `Retry-After` up to two seconds.
//!
//! ```
//! use std::time::Duration;
//! use tower_mesh_http::{HttpReplay, RetryAfter, StatusClassifier};
//! use tower_mesh_retry::{ReplayRequest, RetryPolicy};
//!
//! let replay = HttpReplay::idempotent();
//! let policy = RetryPolicy::default()
//!     .with_classifier(StatusClassifier::gateway_errors())
//!     .with_retryable(RetryAfter::new(Duration::from_secs(2))?)
//!     .replay_with(move |request: &http::Request<String>| replay.replay(request));
//! # let _ = policy;
//! # Ok::<(), tower_mesh_core::ConfigError>(())
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, unreachable_pub, rust_2018_idioms)]

mod body;
mod classify;
#[cfg(feature = "client")]
mod client;
mod grpc_breaker;
mod replay;
mod retry_after;

pub use body::{BufferFuture, BufferRequestBody, BufferRequestBodyLayer, ReplayBody};
pub use classify::{is_gateway_error, GrpcClassifier, GrpcCode, StatusClassifier};
#[cfg(feature = "client")]
pub use client::{
    http2_client, http_client, EndpointFuture, GrpcHealthCheck, HttpClient, HttpEndpoint,
    HttpHealthCheck, InvalidAddressError, MakeHttpEndpoint,
};
pub use grpc_breaker::{
    GrpcBreakerFuture, GrpcCircuitBreaker, GrpcCircuitBreakerLayer, StatusBody,
};
pub use replay::{is_idempotent, HttpReplay, ReplayableBody};
pub use retry_after::{parse_retry_after, retry_after, RetryAfter};
