//! [`BalancerHealth`]: what a proxy's balancer knows of its endpoints, readable
//! without taking the balancer's lock.
//!
//! The [`WatchedBalancer`] wrapper samples every endpoint's
//! [`status`](LoadBalancer::status) after the balancer's `poll_ready` (at most
//! once per [`SAMPLE_EVERY`]), keeps the latest snapshot and records each change
//! as a timestamped [`HealthEvent`], so that reading health never delays a call.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower::discover::Discover;
use tower_mesh_balance::{EndpointStatus, HealthControl, LoadBalancer};
use tower_mesh_breaker::CircuitState;
use tower_mesh_core::BoxError;
use tower_service::Service;

/// The most time between two samples while calls flow.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_millis(5);

/// Polls in one sampling period past which the balancer counts as busy.
const BUSY_POLLS: u32 = 256;

/// While busy, the clock is read every this many polls.
const LOOK_EVERY: u32 = 16;

/// The most events kept; older ones are dropped first.
const MAX_EVENTS: usize = 4_096;

/// One endpoint as of the last sample.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointHealth {
    /// The endpoint's discovery key, formatted with `Debug` (an instance id for a
    /// [`ServiceRegistry`](tower_mesh_balance::ServiceRegistry)).
    pub name: String,
    /// What the balancer knows of it.
    pub status: EndpointStatus,
}

/// A change in an endpoint's health, as seen between two samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HealthChange {
    /// The endpoint was discovered.
    Added,
    /// The endpoint left discovery.
    Removed,
    /// Outlier detection took it out of rotation (its breaker opened).
    Ejected,
    /// Its ejection ended: it is probed, or back in rotation.
    EjectionEnded,
    /// It failed enough active health checks in a row to leave the rotation.
    FailingChecks,
    /// It passed enough active health checks in a row to come back.
    PassingChecks,
    /// It was marked unhealthy by hand.
    MarkedUnhealthy,
    /// It was marked healthy by hand again.
    MarkedHealthy,
    /// Its `poll_ready` failed; the balancer will poll it again later.
    NotReady,
    /// It became ready again after a failed `poll_ready`.
    Ready,
    /// Its own breaker (outlier detection) changed state.
    Breaker {
        /// The state left.
        from: CircuitState,
        /// The state entered.
        to: CircuitState,
    },
}

/// A timestamped [`HealthChange`] of one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthEvent {
    /// When the change was seen (at most a few milliseconds after it happened,
    /// while calls flow).
    pub at: Instant,
    /// The endpoint, named as in [`EndpointHealth::name`].
    pub endpoint: String,
    /// What changed.
    pub change: HealthChange,
}

/// The health of a proxy's endpoints, for reports and dashboards; see
/// [`ServiceProxy::health`](crate::ServiceProxy::health).
///
/// Snapshots are taken by the calls, after the balancer's `poll_ready`, at most
/// every few milliseconds while calls flow, so they trail the balancer slightly
/// and stop changing when no call is made. Events are kept in order, up to the
/// last 4,096.
///
/// # Clone
///
/// Clones read the same snapshot.
#[derive(Clone)]
pub struct BalancerHealth {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    control: Box<dyn Mark>,
}

#[derive(Default)]
struct State {
    endpoints: Vec<EndpointHealth>,
    events: VecDeque<HealthEvent>,
    sampled_at: Option<Instant>,
}

/// Marks endpoints by name, whatever the balancer's key type.
trait Mark: Send + Sync {
    fn mark(&self, name: &str, healthy: bool) -> bool;
}

/// The balancer's health control and the keys it knows, by name.
struct KeyedControl<K> {
    control: HealthControl<K>,
    keys: Mutex<HashMap<String, K>>,
}

impl<K: Clone + Send + Sync> Mark for KeyedControl<K> {
    fn mark(&self, name: &str, healthy: bool) -> bool {
        let key = lock(&self.keys).get(name).cloned();
        match key {
            Some(key) => {
                self.control.mark_healthy(key, healthy);
                true
            }
            None => false,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl BalancerHealth {
    /// Every endpoint as of the last sample, in the balancer's order.
    pub fn endpoints(&self) -> Vec<EndpointHealth> {
        lock(&self.shared.state).endpoints.clone()
    }

    /// Every change seen so far, oldest first.
    pub fn events(&self) -> Vec<HealthEvent> {
        lock(&self.shared.state).events.iter().cloned().collect()
    }

    /// When the last sample was taken, if one was.
    pub fn sampled_at(&self) -> Option<Instant> {
        lock(&self.shared.state).sampled_at
    }

    /// Marks the endpoint called `name` healthy or unhealthy by hand (see
    /// [`HealthControl`]); it takes effect at the balancer's next `poll_ready`.
    ///
    /// Returns `false`, and marks nothing, when no endpoint of that name was in
    /// the last sample.
    pub fn mark_healthy(&self, name: &str, healthy: bool) -> bool {
        self.shared.control.mark(name, healthy)
    }

    /// Takes a new sample of `statuses`, recording what changed since the last.
    fn record(&self, now: Instant, statuses: Vec<EndpointHealth>) {
        let mut state = lock(&self.shared.state);
        let changes = diff(&flags(&state.endpoints), &flags(&statuses));
        for (endpoint, change) in changes {
            if state.events.len() == MAX_EVENTS {
                state.events.pop_front();
            }
            tracing::debug!(endpoint, ?change, "endpoint health changed");
            state.events.push_back(HealthEvent {
                at: now,
                endpoint,
                change,
            });
        }
        state.endpoints = statuses;
        state.sampled_at = Some(now);
    }
}

impl fmt::Debug for BalancerHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = lock(&self.shared.state);
        f.debug_struct("BalancerHealth")
            .field("endpoints", &state.endpoints)
            .field("events", &state.events.len())
            .finish_non_exhaustive()
    }
}

// ===== diffing two samples =====

/// The parts of an endpoint's status whose changes are events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Flags {
    ejected: bool,
    failing_checks: bool,
    marked_unhealthy: bool,
    not_ready: bool,
    breaker: Option<CircuitState>,
}

impl From<&EndpointStatus> for Flags {
    fn from(status: &EndpointStatus) -> Self {
        Flags {
            ejected: status.ejected,
            failing_checks: status.failing_checks,
            marked_unhealthy: status.marked_unhealthy,
            not_ready: status.not_ready,
            breaker: status.breaker,
        }
    }
}

fn flags(endpoints: &[EndpointHealth]) -> Vec<(&str, Flags)> {
    let flags = |endpoint: &EndpointHealth| Flags::from(&endpoint.status);
    endpoints
        .iter()
        .map(|endpoint| (endpoint.name.as_str(), flags(endpoint)))
        .collect()
}

/// The changes from `before` to `after`, endpoint by endpoint.
fn diff(before: &[(&str, Flags)], after: &[(&str, Flags)]) -> Vec<(String, HealthChange)> {
    let mut changes = Vec::new();
    for (name, new) in after {
        match before.iter().find(|(old_name, _)| old_name == name) {
            None => changes.push((name.to_string(), HealthChange::Added)),
            Some((_, old)) => flag_changes(old, new)
                .into_iter()
                .for_each(|change| changes.push((name.to_string(), change))),
        }
    }
    for (old_name, _) in before {
        if !after.iter().any(|(name, _)| name == old_name) {
            changes.push((old_name.to_string(), HealthChange::Removed));
        }
    }
    changes
}

fn flag_changes(old: &Flags, new: &Flags) -> Vec<HealthChange> {
    let mut changes = Vec::new();
    if let (Some(from), Some(to)) = (old.breaker, new.breaker) {
        if from != to {
            changes.push(HealthChange::Breaker { from, to });
        }
    }
    let flags = [
        (
            old.ejected,
            new.ejected,
            HealthChange::Ejected,
            HealthChange::EjectionEnded,
        ),
        (
            old.failing_checks,
            new.failing_checks,
            HealthChange::FailingChecks,
            HealthChange::PassingChecks,
        ),
        (
            old.marked_unhealthy,
            new.marked_unhealthy,
            HealthChange::MarkedUnhealthy,
            HealthChange::MarkedHealthy,
        ),
        (
            old.not_ready,
            new.not_ready,
            HealthChange::NotReady,
            HealthChange::Ready,
        ),
    ];
    for (was, is, raised, cleared) in flags {
        match (was, is) {
            (false, true) => changes.push(raised),
            (true, false) => changes.push(cleared),
            _ => {}
        }
    }
    changes
}

// ===== Watched =====

/// A [`LoadBalancer`] that publishes its endpoints' health to a
/// [`BalancerHealth`] after `poll_ready`: the balancer inside every
/// [`ServiceProxy`](crate::ServiceProxy) built over discovery, named here so that
/// a proxy's own layers can be given one to wrap.
pub struct WatchedBalancer<D: Discover, Req, C> {
    balancer: LoadBalancer<D, Req, C>,
    health: BalancerHealth,
    keyed: Arc<KeyedControl<D::Key>>,
    next_sample: Instant,
    /// Polls since the last sample, and how many polls to let pass between two
    /// looks at the clock (see [`sample`](Self::sample)).
    polls: u32,
    polls_per_look: u32,
}

impl<D, Req, C> WatchedBalancer<D, Req, C>
where
    D: Discover,
    D::Key: Hash + Clone + fmt::Debug + Send + Sync + 'static,
{
    /// Wraps `balancer`, returning it with the handle that reads its health.
    pub(crate) fn new(balancer: LoadBalancer<D, Req, C>) -> (Self, BalancerHealth) {
        let keyed = Arc::new(KeyedControl {
            control: balancer.health_control(),
            keys: Mutex::new(HashMap::new()),
        });
        let shared = Shared {
            state: Mutex::new(State::default()),
            control: Box::new(SharedMark(keyed.clone())),
        };
        let health = BalancerHealth {
            shared: Arc::new(shared),
        };
        let watched = WatchedBalancer {
            balancer,
            health: health.clone(),
            keyed,
            next_sample: Instant::now(),
            polls: 0,
            polls_per_look: 1,
        };
        (watched, health)
    }

    /// Samples every endpoint, unless the last sample is recent.
    ///
    /// Under heavy traffic, reading the clock on every poll would cost more
    /// than the sampling: once a sampling period has seen many polls, the clock
    /// is read only every few polls, which at that rate is well within the
    /// period. (Should traffic then nearly stop, the next sample waits for those
    /// few polls once, and the clock is read on every poll again.)
    fn sample(&mut self) {
        self.polls = self.polls.wrapping_add(1);
        if self.polls % self.polls_per_look != 0 {
            return;
        }
        let now = Instant::now();
        if now < self.next_sample {
            return;
        }
        self.polls_per_look = if self.polls >= BUSY_POLLS {
            LOOK_EVERY
        } else {
            1
        };
        self.polls = 0;
        self.next_sample = now + SAMPLE_EVERY;
        let mut keys = HashMap::new();
        let mut statuses = Vec::with_capacity(self.balancer.len());
        for key in self.balancer.keys() {
            let Some(status) = self.balancer.status(key) else {
                continue;
            };
            let name = format!("{key:?}");
            keys.insert(name.clone(), key.clone());
            statuses.push(EndpointHealth { name, status });
        }
        *lock(&self.keyed.keys) = keys;
        self.health.record(now, statuses);
    }
}

/// Lets [`Shared`] own the control that [`WatchedBalancer`] also updates.
struct SharedMark<K>(Arc<KeyedControl<K>>);

impl<K: Clone + Send + Sync> Mark for SharedMark<K> {
    fn mark(&self, name: &str, healthy: bool) -> bool {
        self.0.mark(name, healthy)
    }
}

impl<D, Req, C> Service<Req> for WatchedBalancer<D, Req, C>
where
    D: Discover,
    D::Key: Hash + Clone + fmt::Debug + Send + Sync + 'static,
    LoadBalancer<D, Req, C>: Service<Req, Error = BoxError>,
{
    type Response = <LoadBalancer<D, Req, C> as Service<Req>>::Response;
    type Error = BoxError;
    type Future = <LoadBalancer<D, Req, C> as Service<Req>>::Future;

    /// The balancer's `poll_ready`, followed by a sample of its endpoints.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        let ready = self.balancer.poll_ready(cx);
        self.sample();
        ready
    }

    fn call(&mut self, request: Req) -> Self::Future {
        self.balancer.call(request)
    }
}

impl<D: Discover, Req, C: fmt::Debug> fmt::Debug for WatchedBalancer<D, Req, C>
where
    D::Key: Hash + Clone,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchedBalancer")
            .field("balancer", &self.balancer)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed() -> Flags {
        Flags {
            breaker: Some(CircuitState::Closed),
            ..Flags::default()
        }
    }

    #[test]
    fn an_ejection_is_seen_with_its_breaker_opening() {
        let ejected = Flags {
            ejected: true,
            breaker: Some(CircuitState::Open),
            ..Flags::default()
        };
        let changes = diff(&[("a", closed())], &[("a", ejected)]);
        let breaker = HealthChange::Breaker {
            from: CircuitState::Closed,
            to: CircuitState::Open,
        };
        assert_eq!(
            changes,
            [
                ("a".to_owned(), breaker),
                ("a".to_owned(), HealthChange::Ejected)
            ]
        );
    }

    #[test]
    fn a_recovering_endpoint_passes_its_checks_and_ends_its_ejection() {
        let down = Flags {
            ejected: true,
            failing_checks: true,
            ..closed()
        };
        let changes = diff(&[("a", down)], &[("a", closed())]);
        assert_eq!(
            changes,
            [
                ("a".to_owned(), HealthChange::EjectionEnded),
                ("a".to_owned(), HealthChange::PassingChecks)
            ]
        );
    }

    #[test]
    fn endpoints_that_come_and_go_are_added_and_removed() {
        let changes = diff(&[("a", closed())], &[("b", closed())]);
        assert_eq!(
            changes,
            [
                ("b".to_owned(), HealthChange::Added),
                ("a".to_owned(), HealthChange::Removed)
            ]
        );
    }

    #[test]
    fn an_unchanged_endpoint_has_no_event() {
        assert!(diff(&[("a", closed())], &[("a", closed())]).is_empty());
    }
}
