//! With the `metrics` feature, state changes and rejections reach the `metrics`
//! registry under the documented names and labels.
#![cfg(feature = "metrics")]

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::MetricKind;
use tower_mesh_breaker::{CircuitBreaker, CircuitBreakerConfig};

/// The value of the metric `name` whose labels include every pair in `labels`.
fn value(
    snapshotter: &Snapshotter,
    kind: MetricKind,
    name: &str,
    labels: &[(&str, &str)],
) -> DebugValue {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .find(|(key, _, _, _)| {
            let (metric_kind, key) = key.clone().into_parts();
            metric_kind == kind
                && key.name() == name
                && labels
                    .iter()
                    .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v))
        })
        .map(|(_, _, _, value)| value)
        .unwrap_or_else(|| panic!("no {kind:?} {name} with labels {labels:?}"))
}

#[test]
fn a_trip_counts_a_transition_and_sets_the_state_gauge() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let breaker = CircuitBreaker::new("metered", CircuitBreakerConfig::default());
        for _ in 0..5 {
            breaker.try_acquire().expect("closed").failure();
        }
        assert!(breaker.try_acquire().is_err(), "open");
    });

    let labels = [("breaker", "metered"), ("from", "closed"), ("to", "open")];
    let transitions = "tower_mesh_breaker_transitions_total";
    assert_eq!(
        value(&snapshotter, MetricKind::Counter, transitions, &labels),
        DebugValue::Counter(1)
    );
    let state = value(
        &snapshotter,
        MetricKind::Gauge,
        "tower_mesh_breaker_state",
        &[("breaker", "metered")],
    );
    assert_eq!(state, DebugValue::Gauge(1.0.into()), "1 is open");
    let rejected = value(
        &snapshotter,
        MetricKind::Counter,
        "tower_mesh_breaker_rejected_total",
        &[("breaker", "metered")],
    );
    assert_eq!(rejected, DebugValue::Counter(1));
}
