//! With the `metrics` feature, every endpoint reports its requests, calls in flight
//! and health.

#![cfg(feature = "metrics")]

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use support::{endpoints, poll_once, Balancer, Mode};
use tower::{Service, ServiceExt};
use tower_mesh_balance::LoadBalancer;

/// Keeps every counter and gauge as an atomic, by `name{endpoint}`.
#[derive(Default)]
struct Values(Mutex<HashMap<String, Arc<AtomicU64>>>);

impl Values {
    fn cell(&self, key: &Key) -> Arc<AtomicU64> {
        let endpoint = key.labels().find(|label| label.key() == "endpoint");
        let name = format!(
            "{}{{{}}}",
            key.name(),
            endpoint.map_or("", |label| label.value())
        );
        self.0.lock().unwrap().entry(name).or_default().clone()
    }

    fn counter(&self, name: &str) -> u64 {
        self.0.lock().unwrap()[name].load(Ordering::SeqCst)
    }

    fn gauge(&self, name: &str) -> f64 {
        f64::from_bits(self.counter(name))
    }
}

impl Recorder for Values {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.cell(key))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.cell(key))
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

#[test]
fn endpoints_report_requests_in_flight_and_health() {
    let values = Values::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    metrics::with_local_recorder(&values, || {
        runtime.block_on(async {
            let (discover, _handle, controls) = endpoints(2);
            let mut balancer: Balancer = LoadBalancer::new(discover);
            controls[0].set_mode(Mode::Hold);
            let held = balancer.ready().await.unwrap().call(1);
            balancer.ready().await.unwrap().call(2).await.unwrap();

            assert_eq!(values.counter("tower_mesh_balance_requests_total{0}"), 1);
            assert_eq!(values.counter("tower_mesh_balance_requests_total{1}"), 1);
            assert_eq!(values.gauge("tower_mesh_balance_in_flight{0}"), 1.0);
            assert_eq!(values.gauge("tower_mesh_balance_in_flight{1}"), 0.0);

            controls[0].release_all();
            held.await.unwrap();
            assert_eq!(values.gauge("tower_mesh_balance_in_flight{0}"), 0.0);

            assert_eq!(values.gauge("tower_mesh_balance_healthy{1}"), 1.0);
            balancer.health_control().mark_healthy(1, false);
            assert!(poll_once(&mut balancer).is_ready());
            assert_eq!(values.gauge("tower_mesh_balance_healthy{1}"), 0.0);
        })
    });
}
