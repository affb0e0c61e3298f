//! What happens around a state change: open durations, listeners, logs and metrics.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::time::Duration;

use tokio::time::Instant;
use tower_mesh_core::random::SplitMix64;

use crate::config::CircuitBreakerConfig;
use std::sync::Arc;

use crate::sync::{lock, Mutex};
use crate::CircuitState;

/// A change of state, as passed to [`on_state_change`](crate::CircuitBreaker::on_state_change)
/// listeners.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StateTransition {
    /// The breaker's name.
    pub breaker: Arc<str>,
    /// The state left.
    pub from: CircuitState,
    /// The state entered.
    pub to: CircuitState,
    /// Why, in a few lowercase words ("consecutive failures", "probes succeeded").
    pub reason: &'static str,
    /// When it happened.
    pub at: Instant,
}

impl StateTransition {
    pub(crate) fn new(
        breaker: Arc<str>,
        from: CircuitState,
        to: CircuitState,
        reason: &'static str,
    ) -> Self {
        StateTransition {
            breaker,
            from,
            to,
            reason,
            at: Instant::now(),
        }
    }
}

// ===== Control =====

/// State that only changes with the breaker's state, kept under its lock.
#[derive(Debug)]
pub(crate) struct Control {
    /// Trips since the breaker last closed; the open duration grows with it.
    trips: u32,
    rng: SplitMix64,
}

/// What a state change will set, computed once before it is published.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Plan {
    trips: u32,
    pub(crate) open_for: Duration,
}

impl Control {
    pub(crate) fn new(seed: u64) -> Self {
        Control {
            trips: 0,
            rng: SplitMix64::new(seed),
        }
    }

    pub(crate) fn plan(&mut self, config: &CircuitBreakerConfig, to: CircuitState) -> Plan {
        match to {
            CircuitState::Open => {
                let trips = self.trips.saturating_add(1);
                let open_for = self.jittered(config, config.open_duration_for_trip(trips));
                Plan { trips, open_for }
            }
            CircuitState::HalfOpen => Plan {
                trips: self.trips,
                open_for: Duration::ZERO,
            },
            _ => Plan {
                trips: 0,
                open_for: Duration::ZERO,
            },
        }
    }

    pub(crate) fn commit(&mut self, plan: Plan) {
        self.trips = plan.trips;
    }

    fn jittered(&mut self, config: &CircuitBreakerConfig, duration: Duration) -> Duration {
        let Some(backoff) = config.open_backoff.filter(|backoff| backoff.jitter > 0.0) else {
            return duration;
        };
        let factor = 1.0 + backoff.jitter * (2.0 * self.rng.next_unit() - 1.0);
        duration.mul_f64(factor).min(backoff.max)
    }
}

/// A seed that differs between breakers and between runs.
pub(crate) fn seed_from(name: &str) -> u64 {
    RandomState::new().hash_one(name)
}

// ===== listeners and reporting =====

type Listener = Arc<dyn Fn(&StateTransition) + Send + Sync>;

pub(crate) struct Listeners {
    list: Mutex<Vec<Listener>>,
}

impl Listeners {
    pub(crate) fn new() -> Self {
        Listeners {
            list: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn add<F>(&self, listener: F)
    where
        F: Fn(&StateTransition) + Send + Sync + 'static,
    {
        lock(&self.list).push(Arc::new(listener));
    }

    /// Logs the change, updates metrics, and calls every listener, outside any lock.
    pub(crate) fn announce(&self, transition: &StateTransition, open_for: Duration) {
        if transition.to == CircuitState::Open {
            tracing::debug!(
                breaker = %transition.breaker,
                from = %transition.from,
                to = %transition.to,
                reason = transition.reason,
                open_for = ?open_for,
                "circuit state changed",
            );
        } else {
            tracing::debug!(
                breaker = %transition.breaker,
                from = %transition.from,
                to = %transition.to,
                reason = transition.reason,
                "circuit state changed",
            );
        }
        publish_transition(transition);
        let listeners: Vec<Listener> = lock(&self.list).clone();
        for listener in listeners {
            listener(transition);
        }
    }
}

impl fmt::Debug for Listeners {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listeners")
            .field("count", &lock(&self.list).len())
            .finish()
    }
}

#[cfg(feature = "metrics")]
fn publish_transition(transition: &StateTransition) {
    let breaker = transition.breaker.to_string();
    metrics::counter!(
        "tower_mesh_breaker_transitions_total",
        "breaker" => breaker.clone(),
        "from" => transition.from.as_str(),
        "to" => transition.to.as_str(),
    )
    .increment(1);
    metrics::gauge!("tower_mesh_breaker_state", "breaker" => breaker)
        .set(transition.to.code() as f64);
}

#[cfg(not(feature = "metrics"))]
fn publish_transition(_transition: &StateTransition) {}

/// Counts one rejected call in the `metrics` registry, when that feature is on.
#[cfg(feature = "metrics")]
pub(crate) fn count_rejection(breaker: &Arc<str>) {
    metrics::counter!("tower_mesh_breaker_rejected_total", "breaker" => breaker.to_string())
        .increment(1);
}

#[cfg(not(feature = "metrics"))]
pub(crate) fn count_rejection(_breaker: &Arc<str>) {}
