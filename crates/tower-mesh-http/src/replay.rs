//! Sending an HTTP request again: which methods may be retried, and how a body
//! is kept so it can be replayed.

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{Empty, Full};
use tower_mesh_retry::ReplayRequest;

use crate::body::ReplayBody;

/// A request body that can be copied for another attempt, or says it cannot.
pub trait ReplayableBody: Sized {
    /// A copy of the body to send again, or `None` if it can only be sent once.
    fn try_clone(&self) -> Option<Self>;
}

impl ReplayableBody for Full<Bytes> {
    fn try_clone(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl ReplayableBody for Empty<Bytes> {
    fn try_clone(&self) -> Option<Self> {
        Some(*self)
    }
}

impl ReplayableBody for String {
    fn try_clone(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl ReplayableBody for Bytes {
    fn try_clone(&self) -> Option<Self> {
        Some(self.clone())
    }
}

impl ReplayableBody for () {
    fn try_clone(&self) -> Option<Self> {
        Some(())
    }
}

impl<B> ReplayableBody for ReplayBody<B> {
    fn try_clone(&self) -> Option<Self> {
        self.replay()
    }
}

/// Replays HTTP requests that are safe to send twice.
///
/// By default only idempotent methods are replayed (`GET`, `HEAD`, `OPTIONS`,
/// `TRACE`, `PUT`, `DELETE`): sending a `POST` twice may charge a card twice, so a
/// failed `POST` is returned as it is unless [`allow_method`](Self::allow_method)
/// or [`allow_every_method`](Self::allow_every_method) says otherwise. A request
/// whose body cannot be copied (a streaming body, or one larger than the buffer
/// of [`BufferRequestBodyLayer`](crate::BufferRequestBodyLayer)) is sent once.
/// Either refusal is a `trace!` event with its reason.
///
/// The copy has the method, URI, version, headers and extensions of the original.
///
/// # Example
///
/// ```
/// use bytes::Bytes;
/// use http::{Method, Request};
/// use http_body_util::Full;
/// use tower_mesh_http::HttpReplay;
/// use tower_mesh_retry::ReplayRequest;
///
/// let get = Request::get("http://example.com/").body(Full::new(Bytes::new())).unwrap();
/// let post = Request::post("http://example.com/").body(Full::new(Bytes::new())).unwrap();
/// assert!(HttpReplay::default().replay(&get).is_some());
/// assert!(HttpReplay::default().replay(&post).is_none());
/// assert!(HttpReplay::default().allow_method(Method::POST).replay(&post).is_some());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReplay {
    extra_methods: Vec<Method>,
    every_method: bool,
}

impl Default for HttpReplay {
    fn default() -> Self {
        HttpReplay::idempotent()
    }
}

impl HttpReplay {
    /// Replays requests with idempotent methods only.
    pub fn idempotent() -> Self {
        HttpReplay {
            extra_methods: Vec::new(),
            every_method: false,
        }
    }

    /// Replays requests with `method` too.
    pub fn allow_method(mut self, method: Method) -> Self {
        self.extra_methods.push(method);
        self
    }

    /// Replays requests whatever their method.
    pub fn allow_every_method(mut self) -> Self {
        self.every_method = true;
        self
    }

    /// Whether a request with `method` may be sent again.
    pub fn allows(&self, method: &Method) -> bool {
        self.every_method || is_idempotent(method) || self.extra_methods.contains(method)
    }
}

/// The methods HTTP defines as idempotent.
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

impl<B: ReplayableBody> ReplayRequest<Request<B>> for HttpReplay {
    fn replay(&self, request: &Request<B>) -> Option<Request<B>> {
        if !self.allows(request.method()) {
            tracing::trace!(method = %request.method(), "not retried: the method is not idempotent");
            return None;
        }
        let Some(body) = request.body().try_clone() else {
            tracing::trace!(uri = %request.uri(), "not retried: the body cannot be replayed");
            return None;
        };
        let mut copy = Request::new(body);
        *copy.method_mut() = request.method().clone();
        *copy.uri_mut() = request.uri().clone();
        *copy.version_mut() = request.version();
        *copy.headers_mut() = request.headers().clone();
        *copy.extensions_mut() = request.extensions().clone();
        Some(copy)
    }
}
