//! A tonic client through the tower-mesh stack, against a real tonic server on
//! loopback: the standard gRPC health service, so no protobuf compiler is needed.
//! The same server checks `GrpcHealthCheck`, whose request is encoded by hand.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tonic::body::Body;
use tonic::transport::server::TcpIncoming;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;
use tower::ServiceBuilder;
use tower_mesh_balance::{
    HealthCheck, InstanceKey, LoadBalancer, ServiceInstance, ServiceRegistry,
};
use tower_mesh_breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitState};
use tower_mesh_http::{
    http2_client, GrpcCircuitBreakerLayer, GrpcClassifier, GrpcHealthCheck, MakeHttpEndpoint,
};

/// Starts a tonic server offering only the health service, on a random port.
async fn health_server() -> (SocketAddr, HealthReporter) {
    let (reporter, service) = tonic_health::server::health_reporter();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpIncoming::from(listener))
            .await
            .expect("the health server runs");
    });
    (addr, reporter)
}

fn instance(addr: SocketAddr) -> ServiceInstance {
    ServiceInstance::new("grpc", addr.ip().to_string(), addr.port())
}

#[tokio::test]
async fn a_tonic_client_calls_through_the_breaker_and_the_balancer() {
    let (addr, reporter) = health_server().await;
    reporter
        .set_service_status("orders", ServingStatus::Serving)
        .await;

    let registry = ServiceRegistry::new(Default::default());
    registry.register(instance(addr)).unwrap();
    let endpoints = MakeHttpEndpoint::<Body>::with_client(http2_client());
    let balancer = LoadBalancer::builder(registry.discover(endpoints))
        .classifier(GrpcClassifier::default())
        .build()
        .unwrap();
    let breaker = CircuitBreaker::new("health", CircuitBreakerConfig::default());
    let channel = ServiceBuilder::new()
        .layer(GrpcCircuitBreakerLayer::new(
            breaker.clone(),
            GrpcClassifier::default(),
        ))
        .buffer(16)
        .service(balancer);

    let mut client = HealthClient::new(channel);
    let request = HealthCheckRequest {
        service: "orders".into(),
    };
    let response = client.check(request).await.expect("a gRPC answer");
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving;
    assert_eq!(response.into_inner().status, serving as i32);

    // A gRPC error status comes back as a tonic status, and counts for the breaker.
    let unknown = HealthCheckRequest {
        service: "nobody".into(),
    };
    let status = client.check(unknown).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert_eq!(
        breaker.state(),
        CircuitState::Closed,
        "NOT_FOUND is not a failure"
    );
}

#[tokio::test]
async fn the_grpc_health_check_follows_the_serving_status() {
    let (addr, reporter) = health_server().await;
    let key = InstanceKey::from(instance(addr));
    let whole_server = GrpcHealthCheck::new();
    let orders = GrpcHealthCheck::for_service("orders");

    assert!(
        whole_server.check(&key).await,
        "the server as a whole is serving"
    );
    assert!(!orders.check(&key).await, "an unknown service is not");
    reporter
        .set_service_status("orders", ServingStatus::Serving)
        .await;
    assert!(orders.check(&key).await);
    reporter
        .set_service_status("orders", ServingStatus::NotServing)
        .await;
    assert!(!orders.check(&key).await);
}
