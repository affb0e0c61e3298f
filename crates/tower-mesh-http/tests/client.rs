//! The hyper-util endpoints and HTTP health checks against a real hyper server on
//! loopback.
#![cfg(feature = "client")]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tower::ServiceExt;
use tower_mesh_balance::{HealthCheck, InstanceKey, MakeEndpoint, ServiceInstance};
use tower_mesh_http::{HttpHealthCheck, InvalidAddressError, MakeHttpEndpoint};

/// A hyper server answering `/healthz` with 200 or 503 as `healthy` says, and any
/// other path with the path and query it was asked for.
async fn server(healthy: Arc<AtomicBool>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let healthy = healthy.clone();
            let service = service_fn(move |request: Request<Incoming>| {
                let healthy = healthy.load(Ordering::SeqCst);
                async move { Ok::<_, Infallible>(answer(&request, healthy)) }
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

fn answer(request: &Request<Incoming>, healthy: bool) -> Response<Full<Bytes>> {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let status = match (path.as_str(), healthy) {
        ("/healthz", false) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::OK,
    };
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::from(path)))
        .unwrap()
}

fn key(addr: SocketAddr) -> InstanceKey {
    InstanceKey::from(ServiceInstance::new(
        "backend",
        addr.ip().to_string(),
        addr.port(),
    ))
}

/// A loopback port nothing listens on.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test]
async fn an_endpoint_sends_the_path_and_query_to_its_instance() {
    let addr = server(Arc::new(AtomicBool::new(true))).await;
    let mut make = MakeHttpEndpoint::<Full<Bytes>>::new();
    let endpoint = make.make_endpoint(&ServiceInstance::new("a", "127.0.0.1", addr.port()));

    let request = Request::get("http://placeholder/orders?id=7")
        .body(Full::default())
        .unwrap();
    let response = endpoint.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "/orders?id=7");
}

#[tokio::test]
async fn an_endpoint_with_an_invalid_address_fails_with_a_typed_error() {
    let mut make = MakeHttpEndpoint::<Full<Bytes>>::new();
    let endpoint = make.make_endpoint(&ServiceInstance::new("bad", "not a host", 80));
    let request = Request::get("/").body(Full::default()).unwrap();
    let error = endpoint.oneshot(request).await.unwrap_err();
    assert!(
        error.downcast_ref::<InvalidAddressError>().is_some(),
        "{error}"
    );
}

#[tokio::test]
async fn the_http_check_follows_the_health_endpoint() {
    let healthy = Arc::new(AtomicBool::new(true));
    let addr = server(healthy.clone()).await;
    let check = HttpHealthCheck::new("/healthz");

    assert!(check.check(&key(addr)).await, "200 passes");
    healthy.store(false, Ordering::SeqCst);
    assert!(!check.check(&key(addr)).await, "503 fails");
    assert!(
        !check.check(&key(closed_port().await)).await,
        "a refused connection fails"
    );
}
