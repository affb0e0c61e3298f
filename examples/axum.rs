//! An axum handler that calls a downstream service through a `ServiceProxy`.
//!
//! Run with `cargo run --example axum`. A downstream "pricing" service (a hyper
//! server that fails its first call) and an axum "shop" server start on loopback;
//! the shop's handler asks pricing for a price through the proxy, which retries
//! the failure. The program then calls the shop once and prints its answer.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tower_mesh::http::{HttpReplay, MakeHttpEndpoint, StatusClassifier};
use tower_mesh::prelude::*;
use tower_mesh::retry::ReplayRequest;

type Pricing = ServiceProxy<Request<Full<Bytes>>, Response<Incoming>>;

/// The downstream service: answers `<sku> costs 42`, except a first `503`.
async fn pricing_server() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let failed_once = Arc::new(AtomicBool::new(false));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let failed_once = failed_once.clone();
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let first = !failed_once.swap(true, Ordering::SeqCst);
                async move { Ok::<_, Infallible>(price(request.uri().path(), first)) }
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

fn price(path: &str, fail: bool) -> Response<Full<Bytes>> {
    let sku = path.trim_start_matches('/');
    let mut response = Response::new(Full::new(Bytes::from(format!("{sku} costs 42"))));
    if fail {
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    }
    response
}

/// The shop's handler: one downstream call through the proxy.
async fn show_price(
    State(pricing): State<Pricing>,
    Path(sku): Path<String>,
) -> (StatusCode, String) {
    let request = match Request::get(format!("http://pricing/{sku}")).body(Full::default()) {
        Ok(request) => request,
        Err(error) => return (StatusCode::BAD_REQUEST, error.to_string()),
    };
    let answer = async {
        let response = pricing.call(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok::<_, BoxError>((status, String::from_utf8_lossy(&body).into_owned()))
    };
    match answer.await {
        Ok((status, body)) if status.is_success() => (StatusCode::OK, format!("shop: {body}")),
        Ok((status, _)) => (
            StatusCode::BAD_GATEWAY,
            format!("pricing answered {status}"),
        ),
        Err(error) => (
            StatusCode::BAD_GATEWAY,
            format!("pricing unreachable: {error}"),
        ),
    }
}

fn pricing_proxy(pricing: SocketAddr) -> Result<Pricing, BoxError> {
    let registry = ServiceRegistry::new(LoadBalancerStrategy::RoundRobin);
    registry.register(ServiceInstance::new(
        "pricing-1",
        pricing.ip().to_string(),
        pricing.port(),
    ))?;
    let replay = HttpReplay::idempotent();
    let retry = RetryPolicy::builder()
        .max_retries(2)
        .backoff(Backoff::constant(Duration::from_millis(20)))
        .budget(RetryBudget::default())
        .build()?
        .replay_with(move |request: &Request<Full<Bytes>>| replay.replay(request));
    let proxy = ServiceProxy::builder("pricing")
        .timeout(Duration::from_secs(2))
        .classifier(StatusClassifier::gateway_errors())
        .retry(retry)
        .build(registry.discover(MakeHttpEndpoint::new()))?;
    Ok(proxy)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let pricing = pricing_proxy(pricing_server().await?)?;
    let shop = Router::new()
        .route("/price/{sku}", get(show_price))
        .with_state(pricing.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let shop_addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, shop).await });

    // A customer asks the shop; the shop asks pricing through the proxy.
    let client = tower_mesh::http::http_client::<Full<Bytes>>();
    let uri = format!("http://{shop_addr}/price/sku-7").parse::<http::Uri>()?;
    let response = client
        .request(Request::get(uri).body(Full::default())?)
        .await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    println!("customer got {status}: {}", String::from_utf8_lossy(&body));
    let stats = pricing.stats();
    println!(
        "pricing proxy: {} calls, {} retries",
        stats.requests, stats.retries
    );
    Ok(())
}
