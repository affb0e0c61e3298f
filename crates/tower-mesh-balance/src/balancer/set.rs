//! The balancer's endpoints: a dense vector with key and serial indexes, readiness
//! and health flags, and the counts that let `poll_ready` answer in O(1).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tower_mesh_breaker::CircuitBreaker;

use super::stats::EndpointStats;
use crate::strategy::EndpointView;

/// Why an endpoint is out of rotation; it is healthy when none holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Health {
    /// Marked unhealthy by hand.
    pub(crate) manual_down: bool,
    /// Failing its active health checks.
    pub(crate) check_down: bool,
    /// Ejected by outlier detection.
    pub(crate) ejected: bool,
    /// Its `poll_ready` failed; it waits to be probed again.
    pub(crate) failed: bool,
}

impl Health {
    pub(crate) fn is_healthy(self) -> bool {
        !(self.manual_down || self.check_down || self.ejected || self.failed)
    }

    /// Whether the panic threshold may still send it calls: detected trouble
    /// (ejection, checks) is overridden; a manual drain or a broken service is not.
    fn is_usable(self) -> bool {
        !(self.manual_down || self.failed)
    }
}

/// One endpoint service and what the balancer knows of it.
#[derive(Debug)]
pub(crate) struct Endpoint<K, S> {
    pub(crate) key: K,
    /// Unique per insertion, so late signals about a replaced endpoint are ignored.
    pub(crate) serial: u64,
    pub(crate) service: S,
    pub(crate) weight: u32,
    pub(crate) hash: u64,
    pub(crate) stats: Arc<EndpointStats>,
    pub(crate) breaker: Option<CircuitBreaker>,
    /// The next wait before probing `poll_ready` again after it failed.
    pub(crate) retry_backoff: Duration,
    ready: bool,
    health: Health,
    unready_at: Option<usize>,
}

impl<K, S> Endpoint<K, S> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        key: K,
        serial: u64,
        service: S,
        weight: u32,
        hash: u64,
        stats: Arc<EndpointStats>,
        breaker: Option<CircuitBreaker>,
        retry_backoff: Duration,
    ) -> Self {
        Endpoint {
            key,
            serial,
            service,
            weight: weight.max(1),
            hash,
            stats,
            breaker,
            retry_backoff,
            ready: false,
            health: Health::default(),
            unready_at: None,
        }
    }

    pub(crate) fn health(&self) -> Health {
        self.health
    }
}

/// Counts kept in step with every flag change.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    healthy: usize,
    usable: usize,
    ejected: usize,
    ready_healthy: usize,
    ready_usable: usize,
}

impl Counts {
    fn apply(&mut self, ready: bool, health: Health, add: bool) {
        let step = |count: &mut usize, holds: bool| {
            if holds {
                *count = if add { *count + 1 } else { *count - 1 };
            }
        };
        step(&mut self.healthy, health.is_healthy());
        step(&mut self.usable, health.is_usable());
        step(&mut self.ejected, health.ejected);
        step(&mut self.ready_healthy, ready && health.is_healthy());
        step(&mut self.ready_usable, ready && health.is_usable());
    }
}

/// The endpoint set.
#[derive(Debug)]
pub(crate) struct EndpointSet<K, S> {
    endpoints: Vec<Endpoint<K, S>>,
    by_key: HashMap<K, usize>,
    by_serial: HashMap<u64, usize>,
    /// Slots whose service must be polled for readiness.
    unready: Vec<usize>,
    counts: Counts,
    panic_threshold: u32,
    panicking: bool,
    /// The instant a load-aware pick reads costs at.
    pub(crate) now: Option<Instant>,
}

impl<K: Hash + Eq + Clone, S> EndpointSet<K, S> {
    pub(crate) fn new(panic_threshold: u32) -> Self {
        EndpointSet {
            endpoints: Vec::new(),
            by_key: HashMap::new(),
            by_serial: HashMap::new(),
            unready: Vec::new(),
            counts: Counts::default(),
            panic_threshold,
            panicking: false,
            now: None,
        }
    }

    pub(crate) fn total(&self) -> usize {
        self.endpoints.len()
    }

    pub(crate) fn ejected(&self) -> usize {
        self.counts.ejected
    }

    pub(crate) fn is_panicking(&self) -> bool {
        self.panicking
    }

    pub(crate) fn slot_of_key(&self, key: &K) -> Option<usize> {
        self.by_key.get(key).copied()
    }

    pub(crate) fn slot_of_serial(&self, serial: u64) -> Option<usize> {
        self.by_serial.get(&serial).copied()
    }

    pub(crate) fn get(&self, slot: usize) -> &Endpoint<K, S> {
        &self.endpoints[slot]
    }

    pub(crate) fn get_mut(&mut self, slot: usize) -> &mut Endpoint<K, S> {
        &mut self.endpoints[slot]
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Endpoint<K, S>> {
        self.endpoints.iter()
    }

    /// Whether some endpoint can take a call now.
    pub(crate) fn has_ready(&self) -> bool {
        if self.panicking {
            self.counts.ready_usable > 0
        } else {
            self.counts.ready_healthy > 0
        }
    }

    /// Whether some endpoint could take a call once it is ready.
    pub(crate) fn has_eligible(&self) -> bool {
        if self.panicking {
            self.counts.usable > 0
        } else {
            self.counts.healthy > 0
        }
    }

    // ===== membership =====

    /// Adds an endpoint, not yet ready, to be polled.
    pub(crate) fn insert(&mut self, endpoint: Endpoint<K, S>) {
        let slot = self.endpoints.len();
        self.by_key.insert(endpoint.key.clone(), slot);
        self.by_serial.insert(endpoint.serial, slot);
        self.counts.apply(endpoint.ready, endpoint.health, true);
        self.endpoints.push(endpoint);
        self.mark_unready(slot);
        self.update_panic();
    }

    /// Removes the endpoint at `slot`; the last endpoint moves into its place.
    pub(crate) fn remove(&mut self, slot: usize) -> Endpoint<K, S> {
        self.leave_unready(slot);
        let removed = self.endpoints.swap_remove(slot);
        self.by_key.remove(&removed.key);
        self.by_serial.remove(&removed.serial);
        self.counts.apply(removed.ready, removed.health, false);
        if let Some(moved) = self.endpoints.get(slot) {
            self.by_key.insert(moved.key.clone(), slot);
            self.by_serial.insert(moved.serial, slot);
            if let Some(position) = moved.unready_at {
                self.unready[position] = slot;
            }
        }
        self.update_panic();
        removed
    }

    // ===== flags =====

    /// Changes an endpoint's health, keeping the counts in step. Returns the health
    /// before the change.
    pub(crate) fn set_health(&mut self, slot: usize, change: impl FnOnce(&mut Health)) -> Health {
        let endpoint = &mut self.endpoints[slot];
        let before = endpoint.health;
        self.counts.apply(endpoint.ready, before, false);
        change(&mut endpoint.health);
        self.counts.apply(endpoint.ready, endpoint.health, true);
        #[cfg(feature = "metrics")]
        endpoint
            .stats
            .metrics
            .set_healthy(endpoint.health.is_healthy());
        self.update_panic();
        before
    }

    fn set_ready(&mut self, slot: usize, ready: bool) {
        let endpoint = &mut self.endpoints[slot];
        self.counts.apply(endpoint.ready, endpoint.health, false);
        endpoint.ready = ready;
        self.counts.apply(endpoint.ready, endpoint.health, true);
    }

    /// The endpoint took a call (or failed): it must be polled before the next one.
    pub(crate) fn mark_unready(&mut self, slot: usize) {
        self.set_ready(slot, false);
        if self.endpoints[slot].unready_at.is_none() {
            self.endpoints[slot].unready_at = Some(self.unready.len());
            self.unready.push(slot);
        }
    }

    /// Stops polling the endpoint (it failed and waits for its retry).
    pub(crate) fn park(&mut self, slot: usize) {
        self.set_ready(slot, false);
        self.leave_unready(slot);
    }

    fn leave_unready(&mut self, slot: usize) {
        let Some(position) = self.endpoints[slot].unready_at.take() else {
            return;
        };
        self.unready.swap_remove(position);
        if let Some(&moved) = self.unready.get(position) {
            self.endpoints[moved].unready_at = Some(position);
        }
    }

    /// How many endpoints wait to be polled; `unready_slot(i)` for `i` below it.
    pub(crate) fn unready_len(&self) -> usize {
        self.unready.len()
    }

    pub(crate) fn unready_slot(&self, position: usize) -> usize {
        self.unready[position]
    }

    /// The endpoint's `poll_ready` returned `Ready(Ok)`.
    pub(crate) fn mark_ready(&mut self, slot: usize) {
        self.leave_unready(slot);
        self.set_ready(slot, true);
    }

    fn update_panic(&mut self) {
        let total = self.endpoints.len();
        self.panicking = self.panic_threshold > 0
            && total > 0
            && self.counts.healthy * 100 < total * self.panic_threshold as usize;
    }
}

impl<K, S> EndpointView for EndpointSet<K, S> {
    fn len(&self) -> usize {
        self.endpoints.len()
    }

    fn is_available(&self, index: usize) -> bool {
        let endpoint = &self.endpoints[index];
        let health = endpoint.health;
        endpoint.ready && (health.is_healthy() || (self.panicking && health.is_usable()))
    }

    fn weight(&self, index: usize) -> u32 {
        self.endpoints[index].weight
    }

    fn in_flight(&self, index: usize) -> u64 {
        self.endpoints[index].stats.in_flight()
    }

    fn load_cost(&self, index: usize) -> f64 {
        let now = self.now.unwrap_or_else(Instant::now);
        self.endpoints[index].stats.cost(now)
    }

    fn key_hash(&self, index: usize) -> u64 {
        self.endpoints[index].hash
    }
}
