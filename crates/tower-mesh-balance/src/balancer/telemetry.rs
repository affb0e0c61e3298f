//! Logs and, with the `metrics` feature, per-endpoint metrics.

#[cfg(feature = "metrics")]
pub(crate) use enabled::EndpointMetrics;

#[cfg(feature = "metrics")]
mod enabled {
    use metrics::{Counter, Gauge};

    /// The metric handles of one endpoint, registered once when it is inserted.
    #[derive(Debug, Clone)]
    pub(crate) struct EndpointMetrics {
        requests: Counter,
        in_flight: Gauge,
        healthy: Gauge,
    }

    impl EndpointMetrics {
        pub(crate) fn new(endpoint: String) -> Self {
            let requests = metrics::counter!("tower_mesh_balance_requests_total", "endpoint" => endpoint.clone());
            let in_flight =
                metrics::gauge!("tower_mesh_balance_in_flight", "endpoint" => endpoint.clone());
            let healthy = metrics::gauge!("tower_mesh_balance_healthy", "endpoint" => endpoint);
            healthy.set(1.0);
            EndpointMetrics {
                requests,
                in_flight,
                healthy,
            }
        }

        pub(crate) fn started(&self) {
            self.requests.increment(1);
            self.in_flight.increment(1.0);
        }

        pub(crate) fn finished(&self) {
            self.in_flight.decrement(1.0);
        }

        pub(crate) fn set_healthy(&self, healthy: bool) {
            self.healthy.set(if healthy { 1.0 } else { 0.0 });
        }
    }
}
