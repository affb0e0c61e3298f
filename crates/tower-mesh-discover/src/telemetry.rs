//! What the sources report through `metrics`, when the `metrics` feature is on.
//!
//! Every metric is labelled `source` (`dns` or `etcd`) and `target` (the name
//! looked up, or the key prefix watched).
#![cfg_attr(not(any(feature = "dns", feature = "etcd")), allow(dead_code))]

/// The labels of one source; every method is free without the `metrics` feature.
#[derive(Debug, Clone)]
pub(crate) struct Telemetry {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    source: &'static str,
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    target: String,
}

#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
impl Telemetry {
    pub(crate) fn new(source: &'static str, target: impl Into<String>) -> Self {
        Telemetry {
            source,
            target: target.into(),
        }
    }

    /// One DNS lookup finished: `found`, `empty` or `failed`.
    #[cfg_attr(not(feature = "dns"), allow(dead_code))]
    pub(crate) fn lookup(&self, result: &'static str) {
        #[cfg(feature = "metrics")]
        metrics::counter!(
            "tower_mesh_discover_lookups_total",
            "source" => self.source,
            "target" => self.target.clone(),
            "result" => result,
        )
        .increment(1);
    }

    /// The source now wants `count` instances.
    pub(crate) fn instances(&self, count: usize) {
        #[cfg(feature = "metrics")]
        metrics::gauge!(
            "tower_mesh_discover_instances",
            "source" => self.source,
            "target" => self.target.clone(),
        )
        .set(count as f64);
    }

    /// An instance record was malformed and skipped.
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    pub(crate) fn rejected(&self) {
        #[cfg(feature = "metrics")]
        metrics::counter!(
            "tower_mesh_discover_rejected_records_total",
            "source" => self.source,
            "target" => self.target.clone(),
        )
        .increment(1);
    }

    /// Talking to the server failed (connection, read or watch).
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    pub(crate) fn error(&self) {
        #[cfg(feature = "metrics")]
        metrics::counter!(
            "tower_mesh_discover_errors_total",
            "source" => self.source,
            "target" => self.target.clone(),
        )
        .increment(1);
    }

    /// Every instance was read afresh, `reason` being `start` or `compacted`.
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    pub(crate) fn resync(&self, reason: &'static str) {
        #[cfg(feature = "metrics")]
        metrics::counter!(
            "tower_mesh_discover_resyncs_total",
            "source" => self.source,
            "target" => self.target.clone(),
            "reason" => reason,
        )
        .increment(1);
    }
}
