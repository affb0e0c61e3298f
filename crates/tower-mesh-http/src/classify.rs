//! Classifiers for HTTP responses and gRPC statuses.

use std::time::Duration;

use http::{HeaderMap, Response, StatusCode};
use tower_mesh_core::{Classify, Outcome};

// ===== StatusClassifier =====

/// Which response statuses count against a server's health.
///
/// Every error (no response at all: a refused connection, a reset, a timeout)
/// is a failure. Among responses, a status is a failure when the classifier's
/// range says so; every other status is a success, because a `404` or a `400`
/// says the server is alive and answering. `429 Too Many Requests` is a failure
/// only when [`with_overload_as_failure`](Self::with_overload_as_failure) says so:
/// it means "slow down", which a breaker may or may not want to act on.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use http::{Response, StatusCode};
/// use tower_mesh_core::{Classify, Outcome};
/// use tower_mesh_http::StatusClassifier;
///
/// let classifier = StatusClassifier::gateway_errors();
/// let unavailable = Response::builder().status(503).body(()).unwrap();
/// let broken = Response::builder().status(500).body(()).unwrap();
/// let verdict = |r: &Response<()>| {
///     Classify::<_, std::io::Error>::classify(&classifier, Ok(r), Duration::ZERO)
/// };
/// assert_eq!(verdict(&unavailable), Outcome::Failure);
/// assert_eq!(verdict(&broken), Outcome::Success, "a 500 is the handler's bug");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusClassifier {
    failures: Failures,
    overload_is_failure: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failures {
    ServerErrors,
    GatewayErrors,
}

impl StatusClassifier {
    /// Every `5xx` status is a failure.
    pub fn server_errors() -> Self {
        StatusClassifier {
            failures: Failures::ServerErrors,
            overload_is_failure: false,
        }
    }

    /// Only `502 Bad Gateway`, `503 Service Unavailable` and `504 Gateway Timeout`
    /// are failures: the statuses that say the server (or the path to it) is unwell,
    /// rather than that one handler broke.
    pub fn gateway_errors() -> Self {
        StatusClassifier {
            failures: Failures::GatewayErrors,
            overload_is_failure: false,
        }
    }

    /// Counts `429 Too Many Requests` as a failure too.
    pub fn with_overload_as_failure(mut self) -> Self {
        self.overload_is_failure = true;
        self
    }

    /// The verdict on one status.
    pub fn classify_status(&self, status: StatusCode) -> Outcome {
        let failed = match self.failures {
            Failures::ServerErrors => status.is_server_error(),
            Failures::GatewayErrors => is_gateway_error(status),
        };
        let overloaded = self.overload_is_failure && status == StatusCode::TOO_MANY_REQUESTS;
        if failed || overloaded {
            Outcome::Failure
        } else {
            Outcome::Success
        }
    }
}

impl Default for StatusClassifier {
    /// [`StatusClassifier::server_errors`].
    fn default() -> Self {
        StatusClassifier::server_errors()
    }
}

impl<B, E> Classify<Response<B>, E> for StatusClassifier {
    fn classify(&self, result: Result<&Response<B>, &E>, _latency: Duration) -> Outcome {
        match result {
            Ok(response) => self.classify_status(response.status()),
            Err(_) => Outcome::Failure,
        }
    }

    fn needs_latency(&self) -> bool {
        false
    }
}

/// `502`, `503` or `504`.
pub fn is_gateway_error(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
    )
}

// ===== gRPC =====

/// A gRPC status code, as carried in the `grpc-status` header or trailer.
///
/// Only the numeric code matters to classification; the names follow the gRPC
/// specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GrpcCode(pub u8);

impl GrpcCode {
    /// `0`: not an error.
    pub const OK: GrpcCode = GrpcCode(0);
    /// `1`: the caller cancelled.
    pub const CANCELLED: GrpcCode = GrpcCode(1);
    /// `2`: an error the server could not map to a code.
    pub const UNKNOWN: GrpcCode = GrpcCode(2);
    /// `3`: the request is malformed.
    pub const INVALID_ARGUMENT: GrpcCode = GrpcCode(3);
    /// `4`: the deadline passed before the call completed.
    pub const DEADLINE_EXCEEDED: GrpcCode = GrpcCode(4);
    /// `5`: the entity asked for does not exist.
    pub const NOT_FOUND: GrpcCode = GrpcCode(5);
    /// `8`: a quota or the server's capacity ran out.
    pub const RESOURCE_EXHAUSTED: GrpcCode = GrpcCode(8);
    /// `12`: the method is not implemented.
    pub const UNIMPLEMENTED: GrpcCode = GrpcCode(12);
    /// `13`: an invariant of the server broke.
    pub const INTERNAL: GrpcCode = GrpcCode(13);
    /// `14`: the service is unavailable right now; retrying may succeed.
    pub const UNAVAILABLE: GrpcCode = GrpcCode(14);
    /// `15`: unrecoverable data loss.
    pub const DATA_LOSS: GrpcCode = GrpcCode(15);

    /// The code in a `grpc-status` header or trailer of `headers`, if present and
    /// well formed (a decimal number from 0 to 16). Malformed values are `None`.
    pub fn from_headers(headers: &HeaderMap) -> Option<GrpcCode> {
        let value = headers.get("grpc-status")?.to_str().ok()?;
        let code: u8 = value.trim().parse().ok()?;
        (code <= 16).then_some(GrpcCode(code))
    }
}

/// Classifies gRPC calls by their status code.
///
/// A response is judged by the `grpc-status` in its headers, which a server sends
/// there when it fails a call before any message (a "trailers-only" response, the
/// usual shape of errors). A response without one carries its status in the
/// trailers, after the body; the headers say nothing yet, so it counts as a
/// success. For a status that arrives in trailers, ask
/// [`classify_trailers`](Self::classify_trailers).
///
/// The default failure codes are those that say the server is unwell: `UNKNOWN`,
/// `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED`, `INTERNAL`, `UNAVAILABLE` and
/// `DATA_LOSS`. Errors (no response) are failures.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use http::Response;
/// use tower_mesh_core::{Classify, Outcome};
/// use tower_mesh_http::{GrpcClassifier, GrpcCode};
///
/// let classifier = GrpcClassifier::default();
/// let unavailable = Response::builder().header("grpc-status", "14").body(()).unwrap();
/// let not_found = Response::builder().header("grpc-status", "5").body(()).unwrap();
/// let verdict = |r: &Response<()>| {
///     Classify::<_, std::io::Error>::classify(&classifier, Ok(r), Duration::ZERO)
/// };
/// assert_eq!(verdict(&unavailable), Outcome::Failure);
/// assert_eq!(verdict(&not_found), Outcome::Success);
/// assert_eq!(classifier.with_failure_code(GrpcCode::NOT_FOUND).classify_code(GrpcCode(5)), Outcome::Failure);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcClassifier {
    /// Bit `n` set: code `n` is a failure.
    failures: u32,
}

impl Default for GrpcClassifier {
    fn default() -> Self {
        let codes = [
            GrpcCode::UNKNOWN,
            GrpcCode::DEADLINE_EXCEEDED,
            GrpcCode::RESOURCE_EXHAUSTED,
            GrpcCode::INTERNAL,
            GrpcCode::UNAVAILABLE,
            GrpcCode::DATA_LOSS,
        ];
        codes.into_iter().fold(
            GrpcClassifier { failures: 0 },
            GrpcClassifier::with_failure_code,
        )
    }
}

impl GrpcClassifier {
    /// Counts `code` as a failure as well.
    pub fn with_failure_code(mut self, code: GrpcCode) -> Self {
        if code.0 < 32 {
            self.failures |= 1 << code.0;
        }
        self
    }

    /// Stops counting `code` as a failure.
    pub fn without_failure_code(mut self, code: GrpcCode) -> Self {
        if code.0 < 32 {
            self.failures &= !(1 << code.0);
        }
        self
    }

    /// The verdict on one status code.
    pub fn classify_code(&self, code: GrpcCode) -> Outcome {
        if code.0 < 32 && self.failures & (1 << code.0) != 0 {
            Outcome::Failure
        } else {
            Outcome::Success
        }
    }

    /// The verdict on a call's trailers: `None` when they carry no well-formed
    /// `grpc-status`.
    pub fn classify_trailers(&self, trailers: &HeaderMap) -> Option<Outcome> {
        GrpcCode::from_headers(trailers).map(|code| self.classify_code(code))
    }
}

impl<B, E> Classify<Response<B>, E> for GrpcClassifier {
    fn classify(&self, result: Result<&Response<B>, &E>, _latency: Duration) -> Outcome {
        match result {
            Ok(response) => match GrpcCode::from_headers(response.headers()) {
                Some(code) => self.classify_code(code),
                None => Outcome::Success,
            },
            Err(_) => Outcome::Failure,
        }
    }

    fn needs_latency(&self) -> bool {
        false
    }
}
