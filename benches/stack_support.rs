//! What the stack benchmarks share: hyper servers on loopback, the bare client,
//! the stacks under test and the waves of requests they are measured with.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceBuilder};
use tower_mesh::balance::{LoadBalancer, SharedBalancer};
use tower_mesh::breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer};
use tower_mesh::http::{http_client, HttpClient, HttpReplay, MakeHttpEndpoint, StatusClassifier};
use tower_mesh::prelude::*;
use tower_mesh::retry::ReplayRequest;
use tower_mesh::retry::RetryLayer;

/// Requests in flight at once.
pub(crate) const CONCURRENCY: usize = 64;

/// The `ServiceProxy` under test.
pub(crate) type Proxy = ServiceProxy<Request<Full<Bytes>>, Response<Incoming>>;

/// The layers composed by hand, boxed.
pub(crate) type Client = BoxCloneSyncService<Request<Full<Bytes>>, Response<Incoming>, BoxError>;

// ===== servers =====

pub(crate) async fn server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("a bound address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(|_: Request<Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
            });
            tokio::spawn(async move {
                let builder = auto::Builder::new(TokioExecutor::new());
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

// ===== clients =====

/// hyper-util's client, sending each request to the next server in turn.
#[derive(Clone)]
pub(crate) struct Bare {
    client: HttpClient<Full<Bytes>>,
    uris: Arc<Vec<Uri>>,
    next: Arc<AtomicUsize>,
}

impl Bare {
    pub(crate) async fn send(&self) -> Result<Response<Incoming>, BoxError> {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.uris.len();
        let request = Request::get(self.uris[index].clone()).body(Full::default())?;
        Ok(self.client.request(request).await?)
    }
}

/// The whole `ServiceProxy` over the servers: overall and per-attempt timeouts,
/// retry with a budget, the service-wide breaker, and the shared balancer with
/// outlier detection.
pub(crate) fn proxy(addrs: &[SocketAddr]) -> Result<(Proxy, ServiceRegistry), BoxError> {
    let registry = ServiceRegistry::new(LoadBalancerStrategy::RoundRobin);
    for (index, addr) in addrs.iter().enumerate() {
        let instance =
            ServiceInstance::new(format!("s{index}"), addr.ip().to_string(), addr.port());
        registry.register(instance)?;
    }
    let replay = HttpReplay::idempotent();
    let retry = RetryPolicy::builder()
        .budget(RetryBudget::default())
        .build()?
        .replay_with(move |request: &Request<Full<Bytes>>| replay.replay(request));
    let proxy = ServiceProxy::builder("bench")
        .timeout(Duration::from_secs(5))
        .attempt_timeout(Duration::from_secs(1))
        .classifier(StatusClassifier::gateway_errors())
        .retry(retry)
        .build(registry.discover(MakeHttpEndpoint::new()))?;
    Ok((proxy, registry))
}

/// The layers alone, composed by hand and boxed: retry, the service-wide breaker
/// and the shared balancer, without the proxy's timeouts.
pub(crate) fn layers(addrs: &[SocketAddr]) -> (Client, ServiceRegistry) {
    let registry = ServiceRegistry::new(LoadBalancerStrategy::RoundRobin);
    for (index, addr) in addrs.iter().enumerate() {
        let instance =
            ServiceInstance::new(format!("s{index}"), addr.ip().to_string(), addr.port());
        registry.register(instance).expect("a valid instance");
    }
    let balancer = LoadBalancer::builder(registry.discover(MakeHttpEndpoint::new()))
        .strategy(LoadBalancerStrategy::RoundRobin)
        .classifier(StatusClassifier::gateway_errors())
        .outlier_detection(CircuitBreakerConfig::default())
        .build()
        .expect("a valid balancer");
    let policy = RetryPolicy::builder()
        .budget(RetryBudget::default())
        .build()
        .expect("a valid policy")
        .with_classifier(StatusClassifier::gateway_errors())
        .replay_with(|request: &Request<Full<Bytes>>| {
            let mut copy = Request::new(request.body().clone());
            *copy.uri_mut() = request.uri().clone();
            Some(copy)
        });
    let breaker = CircuitBreaker::new("bench", CircuitBreakerConfig::default()).leak();
    let service = ServiceBuilder::new()
        .layer(RetryLayer::new(policy))
        .layer(
            CircuitBreakerLayer::new(breaker).with_classifier(StatusClassifier::gateway_errors()),
        )
        .service(SharedBalancer::new(balancer));
    (BoxCloneSyncService::new(service), registry)
}

// ===== measuring =====

/// Sends `waves` waves of `CONCURRENCY` requests; returns the time taken.
pub(crate) async fn waves<F, Fut>(waves: u64, send: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Response<Incoming>, BoxError>> + Send + 'static,
{
    let started = Instant::now();
    for _ in 0..waves {
        let wave: Vec<_> = (0..CONCURRENCY).map(|_| tokio::spawn(send())).collect();
        for request in wave {
            let response = request.await.expect("a request task").expect("a response");
            let body = response.into_body().collect().await.expect("a body");
            assert_eq!(body.to_bytes(), "ok");
        }
    }
    started.elapsed()
}

/// `count` servers, started on the current runtime.
pub(crate) async fn servers(count: usize) -> Vec<SocketAddr> {
    let mut addrs = Vec::with_capacity(count);
    for _ in 0..count {
        addrs.push(server().await);
    }
    addrs
}

impl Bare {
    /// The pooled client over `addrs`, in turn.
    pub(crate) fn new(addrs: &[SocketAddr]) -> Self {
        let uris = addrs
            .iter()
            .map(|addr| format!("http://{addr}/").parse().expect("a valid uri"))
            .collect();
        Bare {
            client: http_client(),
            uris: Arc::new(uris),
            next: Arc::new(AtomicUsize::new(0)),
        }
    }
}

/// A request for the stacks, whose balancer sets the address. The URI is static,
/// so that making it allocates nothing, as the bare client's cloned URIs do not.
pub(crate) fn request() -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::default());
    *request.uri_mut() = Uri::from_static("http://placeholder/");
    request
}
