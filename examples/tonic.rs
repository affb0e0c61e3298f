//! A tonic client through a `ServiceProxy`, against a tonic server on loopback.
//!
//! Run with `cargo run --example tonic`. The server offers the standard gRPC
//! health service (tonic-health), so no protobuf compiler is needed. The proxy
//! balances over the server's instance with HTTP/2 endpoints, judges calls by
//! their gRPC status, and checks the instance with the gRPC health protocol.

use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::ServingStatus;
use tower_mesh::http::{http2_client, GrpcHealthCheck, MakeHttpEndpoint};
use tower_mesh::prelude::*;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // A tonic server with only the health service, on a random loopback port.
    let (reporter, health_service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("inventory", ServingStatus::Serving)
        .await;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health_service)
            .serve_with_incoming(TcpIncoming::from(listener)),
    );

    // gRPC requests stream their bodies, so they are sent once: no retries.
    let registry = ServiceRegistry::new(LoadBalancerStrategy::RoundRobin);
    registry.register(ServiceInstance::new(
        "grpc-1",
        addr.ip().to_string(),
        addr.port(),
    ))?;
    let endpoints = MakeHttpEndpoint::<tonic::body::Body>::with_client(http2_client());
    let proxy = ServiceProxy::builder("inventory-grpc")
        .timeout(Duration::from_secs(5))
        .classifier(GrpcClassifier::default())
        .retry(RetryPolicy::never().replay_with(|_: &http::Request<tonic::body::Body>| None))
        .active_health_check(GrpcHealthCheck::new(), ActiveHealthCheck::default())
        .build(registry.discover(endpoints))?;

    let mut client = HealthClient::new(proxy.clone().into_service());
    for service in ["inventory", "billing"] {
        let request = HealthCheckRequest {
            service: service.into(),
        };
        match client.check(request).await {
            Ok(response) => println!("{service}: status {:?}", response.into_inner().status()),
            Err(status) => println!(
                "{service}: gRPC error {:?}: {}",
                status.code(),
                status.message()
            ),
        }
    }
    if let Some(breaker) = proxy.breaker() {
        println!("service-wide breaker: {}", breaker.state());
    }
    Ok(())
}
