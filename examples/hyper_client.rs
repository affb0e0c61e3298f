//! A `ServiceProxy` over hyper-util's client, in front of real HTTP servers.
//!
//! Run with `cargo run --example hyper_client`. Two hyper servers start on
//! loopback: `stable` always answers, `flaky` answers `503` with `Retry-After: 1`
//! to its first requests. The proxy balances over both, retries what failed
//! (honouring `Retry-After`), and its per-instance breaker takes `flaky` out of
//! rotation; every call succeeds.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tower_mesh::http::{HttpReplay, MakeHttpEndpoint, RetryAfter, StatusClassifier};
use tower_mesh::prelude::*;
use tower_mesh::retry::ReplayRequest;

/// A hyper server answering with its name; the first `failures` requests get a
/// `503` asking to come back in a second.
async fn server(name: &'static str, failures: u32) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let left = Arc::new(AtomicU32::new(failures));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let left = left.clone();
            let service = hyper::service::service_fn(move |_: Request<Incoming>| {
                let failing = left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
                async move { Ok::<_, Infallible>(answer(name, failing)) }
            });
            tokio::spawn(async move {
                let builder = auto::Builder::new(TokioExecutor::new());
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

fn answer(name: &'static str, failing: bool) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(name)));
    if failing {
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        response.headers_mut().insert("retry-after", 1.into());
    }
    response
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let registry = ServiceRegistry::new(LoadBalancerStrategy::RoundRobin);
    for (name, failures) in [("stable", 0), ("flaky", 3)] {
        let addr = server(name, failures).await?;
        registry.register(ServiceInstance::new(
            name,
            addr.ip().to_string(),
            addr.port(),
        ))?;
    }

    let replay = HttpReplay::idempotent();
    let retry = RetryPolicy::builder()
        .max_retries(2)
        .budget(RetryBudget::default())
        .build()?
        .with_retryable(RetryAfter::new(Duration::from_secs(2))?)
        .replay_with(move |request: &Request<Full<Bytes>>| replay.replay(request));
    let proxy = ServiceProxy::builder("greetings")
        .timeout(Duration::from_secs(5))
        .classifier(StatusClassifier::gateway_errors())
        .retry(retry)
        .outlier_detection(
            CircuitBreakerConfig::builder()
                .failure_threshold(2)
                .build()?,
        )
        .build(registry.discover(MakeHttpEndpoint::new()))?;

    for call in 1..=6 {
        let request = Request::get("http://greetings/hello").body(Full::default())?;
        let response = proxy.call(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        println!(
            "call {call}: {status} from {}",
            String::from_utf8_lossy(&body)
        );
    }
    let stats = proxy.stats();
    println!(
        "{} calls, {} attempts, {} retries",
        stats.requests, stats.attempts, stats.retries
    );
    if let Some(health) = proxy.health() {
        for endpoint in health.endpoints() {
            let status = endpoint.status;
            let state = if status.ejected {
                "ejected"
            } else {
                "in rotation"
            };
            println!(
                "endpoint {}: {state}, breaker {:?}",
                endpoint.name, status.breaker
            );
        }
    }
    Ok(())
}
