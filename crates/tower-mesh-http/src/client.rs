//! Endpoints and health checks over hyper-util's client, one per discovered
//! instance.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use pin_project_lite::pin_project;
use tower_mesh_balance::{CheckFuture, HealthCheck, InstanceKey, MakeEndpoint, ServiceInstance};
use tower_mesh_core::BoxError;
use tower_service::Service;

/// A plain-HTTP client pool shared by every endpoint it makes.
pub type HttpClient<B> = Client<HttpConnector, B>;

/// A client with hyper-util's defaults: HTTP/1.1 with pooled connections, and
/// HTTP/2 when a request asks for it.
pub fn http_client<B>() -> HttpClient<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
{
    Client::builder(TokioExecutor::new()).build_http()
}

/// A client that speaks HTTP/2 only (prior knowledge), as gRPC needs.
pub fn http2_client<B>() -> HttpClient<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
{
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

// ===== MakeHttpEndpoint =====

/// Turns each [`ServiceInstance`] into an [`HttpEndpoint`] sharing one client.
///
/// Give it to the balancer's discovery source (it is a [`MakeEndpoint`]); every
/// endpoint reuses the client's connection pool.
///
/// # Example
///
/// ```
/// use http_body_util::Full;
/// use bytes::Bytes;
/// use tower_mesh_balance::{MakeEndpoint, ServiceInstance};
/// use tower_mesh_http::MakeHttpEndpoint;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let mut make = MakeHttpEndpoint::<Full<Bytes>>::new();
/// let endpoint = make.make_endpoint(&ServiceInstance::new("a", "127.0.0.1", 8080));
/// assert_eq!(endpoint.authority(), Some("127.0.0.1:8080"));
/// # }
/// ```
#[derive(Clone)]
pub struct MakeHttpEndpoint<B> {
    client: HttpClient<B>,
}

impl<B> MakeHttpEndpoint<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
{
    /// Endpoints over a new [`http_client`].
    pub fn new() -> Self {
        MakeHttpEndpoint {
            client: http_client(),
        }
    }
}

impl<B> Default for MakeHttpEndpoint<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
{
    fn default() -> Self {
        MakeHttpEndpoint::new()
    }
}

impl<B> MakeHttpEndpoint<B> {
    /// Endpoints over `client`, for example one made by [`http2_client`].
    pub fn with_client(client: HttpClient<B>) -> Self {
        MakeHttpEndpoint { client }
    }
}

impl<B: Send + 'static> MakeEndpoint for MakeHttpEndpoint<B> {
    type Service = HttpEndpoint<B>;

    fn make_endpoint(&mut self, instance: &ServiceInstance) -> HttpEndpoint<B> {
        HttpEndpoint::new(self.client.clone(), &instance.address())
    }
}

impl<B> fmt::Debug for MakeHttpEndpoint<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MakeHttpEndpoint").finish_non_exhaustive()
    }
}

// ===== HttpEndpoint =====

/// Sends every request to one instance: the request's path and query are kept,
/// its scheme and authority replaced by `http://` and the instance's address.
///
/// # Errors
///
/// hyper-util's client errors (refused connections, resets), boxed; and
/// [`InvalidAddressError`] when the instance's address is not a valid URI
/// authority (discovery data is outside input, so this is checked, not assumed).
#[derive(Clone)]
pub struct HttpEndpoint<B> {
    client: HttpClient<B>,
    authority: Result<Authority, InvalidAddressError>,
}

/// An instance's address could not be used as a URI authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidAddressError {
    address: String,
}

impl fmt::Display for InvalidAddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "instance address `{}` is not a valid authority",
            self.address
        )
    }
}

impl std::error::Error for InvalidAddressError {}

impl<B> HttpEndpoint<B> {
    /// An endpoint for `address` (`host:port`) over `client`.
    pub fn new(client: HttpClient<B>, address: &str) -> Self {
        let authority = address
            .parse::<Authority>()
            .map_err(|_| InvalidAddressError {
                address: address.to_owned(),
            });
        HttpEndpoint { client, authority }
    }

    /// The authority requests are sent to, when the address was valid.
    pub fn authority(&self) -> Option<&str> {
        self.authority.as_ref().ok().map(Authority::as_str)
    }
}

/// Points `uri` at `authority` over plain HTTP, keeping its path and query.
fn retarget(uri: &Uri, authority: &Authority) -> Uri {
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(authority.clone());
    parts.path_and_query = Some(path);
    Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}

impl<B> Service<Request<B>> for HttpEndpoint<B>
where
    B: Body + Send + 'static + Unpin,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = EndpointFuture;

    /// Always ready: the client pool connects when a request is sent.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<B>) -> EndpointFuture {
        match &self.authority {
            Ok(authority) => {
                *request.uri_mut() = retarget(request.uri(), authority);
                EndpointFuture::sent(self.client.request(request))
            }
            Err(invalid) => EndpointFuture::invalid(invalid.clone()),
        }
    }
}

impl<B> fmt::Debug for HttpEndpoint<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpEndpoint")
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// The response future of [`HttpEndpoint`].
    pub struct EndpointFuture {
        #[pin]
        state: EndpointState,
    }
}

pin_project! {
    #[project = EndpointStateProj]
    enum EndpointState {
        Sent {
            #[pin]
            future: hyper_util::client::legacy::ResponseFuture,
        },
        Invalid {
            error: InvalidAddressError,
        },
    }
}

impl EndpointFuture {
    fn sent(future: hyper_util::client::legacy::ResponseFuture) -> Self {
        EndpointFuture {
            state: EndpointState::Sent { future },
        }
    }

    fn invalid(error: InvalidAddressError) -> Self {
        EndpointFuture {
            state: EndpointState::Invalid { error },
        }
    }
}

impl Future for EndpointFuture {
    type Output = Result<Response<Incoming>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            EndpointStateProj::Sent { future } => future.poll(cx).map_err(Into::into),
            EndpointStateProj::Invalid { error } => Poll::Ready(Err(error.clone().into())),
        }
    }
}

impl fmt::Debug for EndpointFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointFuture").finish_non_exhaustive()
    }
}

// ===== health checks =====

/// Passes when `GET <path>` on the instance answers with a `2xx` status within
/// the balancer's check timeout.
///
/// # Example
///
/// ```
/// use tower_mesh_http::HttpHealthCheck;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let check = HttpHealthCheck::new("/healthz");
/// # let _ = check;
/// # }
/// ```
#[derive(Clone)]
pub struct HttpHealthCheck {
    client: HttpClient<Empty<Bytes>>,
    path: PathAndQuery,
}

impl HttpHealthCheck {
    /// Checks `path` (`/` if it is not a valid path).
    pub fn new(path: &str) -> Self {
        let path = path
            .parse::<PathAndQuery>()
            .unwrap_or_else(|_| PathAndQuery::from_static("/"));
        HttpHealthCheck {
            client: http_client(),
            path,
        }
    }

    async fn probe(client: HttpClient<Empty<Bytes>>, uri: Uri) -> bool {
        let Ok(request) = Request::get(uri).body(Empty::new()) else {
            return false;
        };
        match client.request(request).await {
            Ok(response) => response.status().is_success(),
            Err(_) => false,
        }
    }
}

impl HealthCheck<InstanceKey> for HttpHealthCheck {
    fn check(&self, key: &InstanceKey) -> CheckFuture {
        let address = key.instance().address();
        let uri = format!("http://{address}{}", self.path).parse::<Uri>();
        let client = self.client.clone();
        Box::pin(async move {
            match uri {
                Ok(uri) => HttpHealthCheck::probe(client, uri).await,
                Err(_) => false,
            }
        })
    }
}

impl fmt::Debug for HttpHealthCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpHealthCheck")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Passes when the instance's gRPC health service (`grpc.health.v1.Health/Check`)
/// says `SERVING` for the configured service name (`""`, the whole server, by
/// default).
///
/// The request and response are small enough to encode by hand, so this needs no
/// protobuf compiler and no gRPC library.
#[derive(Clone)]
pub struct GrpcHealthCheck {
    client: HttpClient<Full<Bytes>>,
    service: String,
}

/// The `status` of a `HealthCheckResponse` that means serving.
const SERVING: u64 = 1;

impl GrpcHealthCheck {
    /// Checks the server as a whole.
    pub fn new() -> Self {
        GrpcHealthCheck::for_service("")
    }

    /// Checks one named service.
    pub fn for_service(service: &str) -> Self {
        GrpcHealthCheck {
            client: http2_client(),
            service: service.to_owned(),
        }
    }

    async fn probe(client: HttpClient<Full<Bytes>>, uri: Uri, message: Bytes) -> bool {
        let request = Request::post(uri)
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(message));
        let Ok(request) = request else { return false };
        let Ok(response) = client.request(request).await else {
            return false;
        };
        if response.status() != StatusCode::OK {
            return false;
        }
        match response.into_body().collect().await {
            Ok(body) => health_status(&body.to_bytes()) == Some(SERVING),
            Err(_) => false,
        }
    }
}

impl Default for GrpcHealthCheck {
    fn default() -> Self {
        GrpcHealthCheck::new()
    }
}

impl HealthCheck<InstanceKey> for GrpcHealthCheck {
    fn check(&self, key: &InstanceKey) -> CheckFuture {
        let address = key.instance().address();
        let uri = format!("http://{address}/grpc.health.v1.Health/Check").parse::<Uri>();
        let client = self.client.clone();
        let message = health_request(&self.service);
        Box::pin(async move {
            match uri {
                Ok(uri) => GrpcHealthCheck::probe(client, uri, message).await,
                Err(_) => false,
            }
        })
    }
}

impl fmt::Debug for GrpcHealthCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcHealthCheck")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

/// A gRPC frame holding `HealthCheckRequest { service }`.
pub(crate) fn health_request(service: &str) -> Bytes {
    let mut message = Vec::new();
    if !service.is_empty() {
        message.push(0x0a); // field 1, length-delimited
        push_varint(&mut message, service.len() as u64);
        message.extend_from_slice(service.as_bytes());
    }
    let mut frame = vec![0u8]; // not compressed
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    Bytes::from(frame)
}

/// The `status` field of the first `HealthCheckResponse` frame in `body`, or
/// `None` when the body is not such a frame. A response without the field has
/// status 0 (`UNKNOWN`), as protobuf defaults say.
pub(crate) fn health_status(body: &[u8]) -> Option<u64> {
    let (&compressed, rest) = body.split_first()?;
    if compressed != 0 || rest.len() < 4 {
        return None;
    }
    let length = u32::from_be_bytes(rest[..4].try_into().ok()?) as usize;
    let mut message = rest.get(4..4 + length)?;
    let mut status = 0;
    while let Some((&tag, tail)) = message.split_first() {
        let (value, tail) = read_varint(tail)?;
        match tag {
            0x08 => status = value,
            _ if tag & 0x07 == 0 => {}
            _ => return None,
        }
        message = tail;
    }
    Some(status)
}

fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn read_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (index, &byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Some((value, &bytes[index + 1..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_health_request_for_the_whole_server_is_an_empty_message() {
        assert_eq!(&health_request("")[..], &[0, 0, 0, 0, 0]);
    }

    #[test]
    fn a_health_request_names_its_service() {
        assert_eq!(
            &health_request("db")[..],
            &[0, 0, 0, 0, 4, 0x0a, 2, b'd', b'b']
        );
    }

    #[test]
    fn serving_and_not_serving_responses_decode() {
        assert_eq!(health_status(&[0, 0, 0, 0, 2, 0x08, 1]), Some(SERVING));
        assert_eq!(health_status(&[0, 0, 0, 0, 2, 0x08, 2]), Some(2));
        assert_eq!(
            health_status(&[0, 0, 0, 0, 0]),
            Some(0),
            "an empty message is UNKNOWN"
        );
    }

    #[test]
    fn malformed_health_responses_decode_to_nothing() {
        for body in [
            &[][..],
            &[1, 0, 0, 0, 0],
            &[0, 0, 0, 0, 9, 0x08],
            &[0, 0, 0, 0, 1, 0x0a],
        ] {
            assert_eq!(health_status(body), None, "{body:?}");
        }
    }
}
