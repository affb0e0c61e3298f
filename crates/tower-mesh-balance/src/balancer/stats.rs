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
    /// peak), a faster one pulls it down by a weight that grows with the time since
    /// the last update.
    pub(crate) fn observe(&self, latency: Duration, now: Instant) {
        let sample = latency.as_nanos() as f64;
        let estimate = f64::from_bits(self.estimate.load(Ordering::Relaxed));
        let next = if sample > estimate {
            sample
        } else {
            let keep = self.keep_factor(now);
            estimate * keep + sample * (1.0 - keep)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn stats() -> EndpointStats {
        EndpointStats::new(
            Duration::from_millis(10),
            Duration::from_secs(10),
            #[cfg(feature = "metrics")]
            crate::balancer::telemetry::EndpointMetrics::new("test".into()),
        )
    }

    #[test]
    fn a_slower_call_raises_the_estimate_to_its_latency() {
        let stats = stats();
        let now = stats.origin;
        stats.observe(Duration::from_millis(50), now);
        assert_eq!(stats.cost(now), 50_000_000.0);
    }

    #[test]
    fn a_faster_call_pulls_the_estimate_down_by_the_time_passed() {
        let stats = stats();
        let start = stats.origin;
        stats.observe(Duration::from_millis(50), start);
        // Ten seconds later (one decay period), a 10 ms call keeps e^-1 of 50 ms.
        let later = start + Duration::from_secs(10);
        stats.observe(Duration::from_millis(10), later);
        let keep = (-1.0f64).exp();
        let expected = 50e6 * keep + 10e6 * (1.0 - keep);
        assert!((stats.cost(later) - expected).abs() < 1.0);
    }

    #[test]
    fn the_cost_grows_with_calls_in_flight() {
        let stats = stats();
        let now = stats.origin;
        let idle = stats.cost(now);
        stats.call_started();
        stats.call_started();
        assert_eq!(stats.cost(now), 3.0 * idle);
    }
}
