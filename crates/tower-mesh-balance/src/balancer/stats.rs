//! Per-endpoint counters shared with response futures: calls in flight, the
//! peak-EWMA latency estimate, and the optional `metrics` handles.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// Load and latency of one endpoint.
#[derive(Debug)]
pub(crate) struct EndpointStats {
    in_flight: AtomicU64,
    /// The latency estimate in nanoseconds, as `f64` bits.
    estimate: AtomicU64,
    /// When the estimate was last updated, in nanoseconds since `origin`.
    updated: AtomicU64,
    origin: Instant,
    decay_nanos: f64,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: crate::balancer::telemetry::EndpointMetrics,
}

impl EndpointStats {
    pub(crate) fn new(
        default_rtt: Duration,
        decay: Duration,
        #[cfg(feature = "metrics")] metrics: crate::balancer::telemetry::EndpointMetrics,
    ) -> Self {
        EndpointStats {
            in_flight: AtomicU64::new(0),
            estimate: AtomicU64::new((default_rtt.as_nanos() as f64).to_bits()),
            updated: AtomicU64::new(0),
            origin: Instant::now(),
            decay_nanos: decay.as_nanos().max(1) as f64,
            #[cfg(feature = "metrics")]
            metrics,
        }
    }

    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn call_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        self.metrics.started();
    }

    pub(crate) fn call_finished(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        self.metrics.finished();
    }

    /// The latency estimate decayed to `now`, times the calls in flight plus one.
    pub(crate) fn cost(&self, now: Instant) -> f64 {
        let load = (self.in_flight() + 1) as f64;
        self.decayed(now) * load
    }

    /// Folds one call's latency in: a slower call raises the estimate at once (the
    /// peak), a faster one pulls it down gradually.
    pub(crate) fn observe(&self, latency: Duration, now: Instant) {
        let sample = latency.as_nanos() as f64;
        let current = self.decayed(now);
        let next = if sample > current {
            sample
        } else {
            let keep = self.keep_factor(now);
            current * keep + sample * (1.0 - keep)
        };
        // Two stores, not one atomic update: a racing call may lose its sample,
        // which an estimate can afford.
        self.estimate.store(next.to_bits(), Ordering::Relaxed);
        self.updated.store(self.nanos(now), Ordering::Relaxed);
    }

    fn decayed(&self, now: Instant) -> f64 {
        f64::from_bits(self.estimate.load(Ordering::Relaxed)) * self.keep_factor(now)
    }

    /// How much of the old estimate survives the time since the last update.
    fn keep_factor(&self, now: Instant) -> f64 {
        let since = self
            .nanos(now)
            .saturating_sub(self.updated.load(Ordering::Relaxed));
        (-(since as f64) / self.decay_nanos).exp()
    }

    fn nanos(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.origin);
        elapsed.as_nanos().min(u128::from(u64::MAX)) as u64
    }
}
