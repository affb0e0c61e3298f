//! Throughput of the whole stack over hyper on loopback, beside a bare client.
//!
//! Three hyper servers answer `ok` on loopback. Each criterion iteration sends one
//! wave of `CONCURRENCY` requests at once and waits for every answer, through:
//!
//! - `bare hyper-util`: hyper-util's pooled client, round robin over the three
//!   servers by hand;
//! - `tower-mesh stack`: a `ServiceProxy` over the same client as balancer
//!   endpoints: overall and per-attempt timeouts, retry (with a budget), a
//!   service-wide circuit breaker, a buffer, and a round-robin balancer with
//!   per-instance outlier detection.
//!
//! Both share the machine with the servers, so the figure to read is the ratio.
//!
//! Run with `cargo bench -p tower-mesh-benches --bench stack`.

// criterion's macros generate an undocumented public function.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::time::Instant;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceBuilder, ServiceExt};
use tower_mesh::balance::LoadBalancer;
use tower_mesh::breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer};
use tower_mesh::http::{http_client, HttpClient, HttpReplay, MakeHttpEndpoint, StatusClassifier};
use tower_mesh::prelude::*;
use tower_mesh::retry::ReplayRequest;
use tower_mesh::retry::RetryLayer;

/// Requests in flight at once.
const CONCURRENCY: usize = 64;

type Client = BoxCloneSyncService<Request<Full<Bytes>>, Response<Incoming>, BoxError>;

// ===== servers =====

async fn server() -> SocketAddr {
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
struct Bare {
    client: HttpClient<Full<Bytes>>,
    uris: Arc<Vec<Uri>>,
    next: Arc<AtomicUsize>,
}

impl Bare {
    async fn send(&self) -> Result<Response<Incoming>, BoxError> {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.uris.len();
        let request = Request::get(self.uris[index].clone()).body(Full::default())?;
        Ok(self.client.request(request).await?)
    }
}

/// The whole `ServiceProxy` over the three servers: overall and per-attempt
/// timeouts, retry with a budget, the service-wide breaker, a buffer, and the
/// balancer with outlier detection.
fn stack(addrs: &[SocketAddr]) -> Result<(Client, ServiceRegistry), BoxError> {
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
        .buffer(1024)
        .build(registry.discover(MakeHttpEndpoint::new()))?;
    Ok((proxy.into_service(), registry))
}

/// The layers alone, composed by hand: retry, the service-wide breaker, a buffer
/// and the balancer, without the proxy's timeouts.
fn layers(addrs: &[SocketAddr]) -> (Client, ServiceRegistry) {
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
        .buffer(1024)
        .service(balancer);
    (BoxCloneSyncService::new(service), registry)
}

// ===== measuring =====

/// Sends `waves` waves of `CONCURRENCY` requests; returns the time taken.
async fn waves<F, Fut>(waves: u64, send: F) -> Duration
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

fn throughput(c: &mut Criterion) {
    let runtime = Runtime::new().expect("a multi-threaded runtime");
    let addrs: Vec<SocketAddr> = runtime.block_on(async {
        let mut addrs = Vec::new();
        for _ in 0..3 {
            addrs.push(server().await);
        }
        addrs
    });
    let uris: Vec<Uri> = addrs
        .iter()
        .map(|addr| format!("http://{addr}/").parse().expect("a valid uri"))
        .collect();
    let bare = Bare {
        client: http_client(),
        uris: Arc::new(uris),
        next: Arc::new(AtomicUsize::new(0)),
    };
    let (mesh, _registry) = runtime
        .block_on(async { stack(&addrs) })
        .expect("a valid proxy");

    let mut group = c.benchmark_group("stack over loopback");
    group.throughput(Throughput::Elements(CONCURRENCY as u64));
    group.bench_function(BenchmarkId::from_parameter("bare hyper-util"), |b| {
        b.to_async(&runtime).iter_custom(|iters| {
            let bare = bare.clone();
            async move {
                waves(iters, move || {
                    let bare = bare.clone();
                    async move { bare.send().await }
                })
                .await
            }
        })
    });
    group.bench_function(BenchmarkId::from_parameter("tower-mesh stack"), |b| {
        b.to_async(&runtime).iter_custom(|iters| {
            let mesh = mesh.clone();
            async move {
                waves(iters, move || {
                    let request = Request::get("http://placeholder/").body(Full::default());
                    mesh.clone().oneshot(request.expect("a valid request"))
                })
                .await
            }
        })
    });
    let (layered, _layered_registry) = runtime.block_on(async { layers(&addrs) });
    group.bench_function(
        BenchmarkId::from_parameter("tower-mesh layers, no timeouts"),
        |b| {
            b.to_async(&runtime).iter_custom(|iters| {
                let layered = layered.clone();
                async move {
                    waves(iters, move || {
                        let request = Request::get("http://placeholder/").body(Full::default());
                        layered.clone().oneshot(request.expect("a valid request"))
                    })
                    .await
                }
            })
        },
    );
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(20);
    targets = throughput
}
criterion_main!(benches);
