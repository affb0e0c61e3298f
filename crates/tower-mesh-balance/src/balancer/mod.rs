//! [`LoadBalancer`]: the balancing `tower::Service` over a `Discover` stream.
//!
//! The balancer keeps every discovered endpoint in one set, in the order they
//! arrived, and tracks for each whether it is *ready* (its `poll_ready` said so and
//! it has not taken a call since) and *healthy* (not drained by hand, not failing
//! active checks, not ejected by its breaker, and its `poll_ready` has not failed).
//! A strategy picks among endpoints that are both; `poll_ready` only polls the
//! endpoints that took a call or are new, so a pick costs the same with ten
//! endpoints or ten thousand.
//!
//! # Never hanging
//!
//! When no endpoint can take a call (none is known, or none is healthy and the
//! panic threshold does not apply), `poll_ready` returns `Ready(Ok(()))` at once,
//! or after [`wait_for_instance`](LoadBalancerBuilder::wait_for_instance), and the
//! next `call` fails with [`NoHealthyInstanceError`]. `poll_ready` never fails
//! for that reason, because tower treats a `poll_ready` error as terminal.
//!
//! An endpoint whose `poll_ready` fails is taken out of rotation and polled again
//! after a growing wait ([`readiness_retry`](LoadBalancerBuilder::readiness_retry));
//! it is not dropped. Calls already sent to an endpoint that is then removed keep
//! running: their futures do not depend on the endpoint staying in the set.

mod builder;
mod future;
mod set;
pub(crate) mod signals;
mod stats;
mod telemetry;
mod timers;

pub use builder::{DiscoveryFailure, LoadBalancerBuilder};
pub use future::ResponseFuture;
pub use signals::HealthControl;

use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{sleep_until, Instant, Sleep};
use tower::discover::{Change, Discover};
use tower_mesh_breaker::{CircuitBreaker, CircuitBreakerConfig, CircuitState, Permit};
use tower_mesh_core::{BoxError, Classify, ErrorsAsFailures};
use tower_service::Service;

use crate::check::ActiveChecks;
use crate::rand::stable_hash;
use crate::strategy::{first_available, EndpointView, Picker, SelectEndpoint};
use crate::{LoadBalancerStrategy, NoHealthyInstanceError};
use builder::{HashKeyFn, Settings, WeightFn};
use future::CallRecord;
use set::{Endpoint, EndpointSet};
use signals::{Signal, Signals, Source, Target};
use stats::EndpointStats;
use timers::{Timer, Timers};

/// A load balancer over the endpoints of a [`Discover`] stream.
///
/// Endpoints come and go with the stream's [`Change::Insert`] and
/// [`Change::Remove`]; they can be any `tower::Service` (a hyper or tonic client,
/// a mock). Which endpoint takes a call is decided by a
/// [`LoadBalancerStrategy`] or a [`SelectEndpoint`] of your own, which sees the
/// request. Health comes from three places, combined: manual marks through
/// [`health_control`](Self::health_control), outlier detection by a per-endpoint
/// circuit breaker ([`outlier_detection`](LoadBalancerBuilder::outlier_detection)),
/// and active checks ([`active_health_check`](LoadBalancerBuilder::active_health_check)).
///
/// # Never hanging
///
/// When no endpoint can take a call (none is known, or none is healthy and the
/// panic threshold does not apply), `poll_ready` returns `Ready(Ok(()))` at once,
/// or after [`wait_for_instance`](LoadBalancerBuilder::wait_for_instance), and the
/// next `call` fails with [`NoHealthyInstanceError`]. `poll_ready` never fails for
/// that reason, because tower treats a `poll_ready` error as terminal. An endpoint
/// whose `poll_ready` fails is taken out of rotation and polled again after a
/// growing wait ([`readiness_retry`](LoadBalancerBuilder::readiness_retry)), not
/// dropped. Calls already sent to an endpoint that is then removed keep running.
///
/// # Keys
///
/// Discovery keys must be `Hash + Eq + Clone + Debug + Send + Sync + 'static`: the
/// balancer indexes endpoints by key, hashes keys for consistent hashing, and
/// names endpoints by key in logs and metrics.
///
/// # Errors
///
/// Calls fail with a [`BoxError`]: [`NoHealthyInstanceError`] when no endpoint
/// could take the call (find it with `downcast_ref`), otherwise the endpoint's own
/// error, converted with `Into<BoxError>`.
///
/// # Example
///
/// ```
/// use tower::{service_fn, Service, ServiceExt};
/// use tower_mesh_balance::{LoadBalancer, LoadBalancerStrategy, ServiceInstance, ServiceRegistry};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_mesh_core::BoxError> {
/// let registry = ServiceRegistry::new(LoadBalancerStrategy::RoundRobin);
/// registry.register(ServiceInstance::new("a", "10.0.0.1", 80))?;
/// registry.register(ServiceInstance::new("b", "10.0.0.2", 80))?;
///
/// // Each endpoint answers with its instance's id.
/// let discover = registry.discover(|instance: &ServiceInstance| {
///     let id = instance.id.clone();
///     service_fn(move |_: ()| {
///         let id = id.clone();
///         async move { Ok::<_, std::io::Error>(id) }
///     })
/// });
/// let mut balancer = LoadBalancer::builder(discover).build()?;
///
/// assert_eq!(balancer.ready().await?.call(()).await?, "a");
/// assert_eq!(balancer.ready().await?.call(()).await?, "b");
/// assert_eq!(balancer.ready().await?.call(()).await?, "a");
/// # Ok(()) }
/// ```
pub struct LoadBalancer<D: Discover, Req, C = ErrorsAsFailures> {
    discover: Pin<Box<D>>,
    discovery_ended: bool,
    set: EndpointSet<D::Key, D::Service>,
    picker: Picker,
    selector: Option<Box<dyn SelectEndpoint<Req>>>,
    hash_key: Option<HashKeyFn<Req>>,
    weight_by: Option<WeightFn<D::Key>>,
    classifier: C,
    settings: Settings,
    signals: Arc<Signals<D::Key>>,
    /// Keys marked unhealthy by hand, kept across removal and re-insertion.
    drained: HashSet<D::Key>,
    checks: Option<ActiveChecks<D::Key>>,
    timers: Timers,
    next_serial: u64,
    waiting: Option<Waiting>,
    fail_next: Option<NoHealthyInstanceError>,
    track_latency: bool,
    _request: PhantomData<fn(Req)>,
}

/// A wait for an endpoint to appear, started when none could take a call.
struct Waiting {
    since: Instant,
    sleep: Pin<Box<Sleep>>,
}

/// What the balancer knows of one endpoint; see [`LoadBalancer::status`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct EndpointStatus {
    /// In rotation: none of the reasons below holds.
    pub healthy: bool,
    /// Marked unhealthy by hand.
    pub marked_unhealthy: bool,
    /// Failing its active health checks.
    pub failing_checks: bool,
    /// Ejected by outlier detection.
    pub ejected: bool,
    /// Its `poll_ready` failed; it will be polled again.
    pub not_ready: bool,
    /// Calls sent to it that have not finished.
    pub in_flight: u64,
    /// Its breaker's state, with outlier detection.
    pub breaker: Option<CircuitState>,
}

impl<D: Discover, Req> LoadBalancer<D, Req> {
    /// Starts building a balancer over `discover`.
    pub fn builder(discover: D) -> LoadBalancerBuilder<D, Req> {
        LoadBalancerBuilder::new(discover)
    }

    /// A round-robin balancer over `discover`, with no health checking, failing
    /// calls at once when no endpoint is known.
    pub fn new(discover: D) -> Self
    where
        D::Key: Hash + Clone + Send + Sync + 'static,
    {
        Self::from_builder(LoadBalancerBuilder::new(discover))
    }
}

impl<D: Discover, Req, C> LoadBalancer<D, Req, C>
where
    D::Key: Hash + Clone + Send + Sync + 'static,
{
    pub(crate) fn from_builder(builder: LoadBalancerBuilder<D, Req, C>) -> Self {
        let settings = builder.settings;
        let checks = builder
            .checks
            .map(|(checker, config)| ActiveChecks::new(checker, config));
        LoadBalancer {
            discover: Box::pin(builder.discover),
            discovery_ended: false,
            set: EndpointSet::new(settings.panic_threshold),
            picker: Picker::new(settings.strategy, settings.seed),
            selector: builder.selector,
            hash_key: builder.hash_key,
            weight_by: builder.weight_by,
            classifier: builder.classifier,
            track_latency: settings.strategy == LoadBalancerStrategy::PeakEwma,
            settings,
            signals: Arc::new(Signals::new()),
            drained: HashSet::new(),
            checks,
            timers: Timers::default(),
            next_serial: 0,
            waiting: None,
            fail_next: None,
            _request: PhantomData,
        }
    }

    /// A handle to mark endpoints healthy or unhealthy by hand.
    pub fn health_control(&self) -> HealthControl<D::Key> {
        HealthControl {
            signals: self.signals.clone(),
        }
    }

    /// How many endpoints are known, healthy or not.
    pub fn len(&self) -> usize {
        self.set.total()
    }

    /// `true` when no endpoint is known.
    pub fn is_empty(&self) -> bool {
        self.set.total() == 0
    }

    /// Whether too few endpoints are healthy and calls are spread over all of them
    /// (see [`panic_threshold`](LoadBalancerBuilder::panic_threshold)).
    pub fn is_panicking(&self) -> bool {
        self.set.is_panicking()
    }

    /// What the balancer knows of the endpoint with this key, as of its last
    /// `poll_ready`.
    pub fn status(&self, key: &D::Key) -> Option<EndpointStatus> {
        let endpoint = self.set.get(self.set.slot_of_key(key)?);
        let health = endpoint.health();
        Some(EndpointStatus {
            healthy: health.is_healthy(),
            marked_unhealthy: health.manual_down,
            failing_checks: health.check_down,
            ejected: health.ejected,
            not_ready: health.failed,
            in_flight: endpoint.stats.in_flight(),
            breaker: endpoint.breaker.as_ref().map(CircuitBreaker::state),
        })
    }

    /// The keys of every known endpoint, in the order strategies see them.
    pub fn keys(&self) -> impl Iterator<Item = &D::Key> {
        self.set.iter().map(|endpoint| &endpoint.key)
    }
}

// ===== discovery =====

impl<D: Discover, Req, C> LoadBalancer<D, Req, C>
where
    D::Key: Hash + Clone + fmt::Debug + Send + Sync + 'static,
    D::Error: Into<BoxError>,
{
    /// Applies every change the stream has ready.
    fn poll_discovery(&mut self, cx: &mut Context<'_>) -> Result<(), BoxError> {
        while !self.discovery_ended {
            match self.discover.as_mut().poll_discover(cx) {
                Poll::Pending => return Ok(()),
                Poll::Ready(Some(Ok(change))) => self.apply(change),
                Poll::Ready(Some(Err(error))) => return self.on_discovery_error(error.into()),
                Poll::Ready(None) => {
                    tracing::debug!(
                        endpoints = self.set.total(),
                        "discovery ended; keeping endpoints"
                    );
                    self.discovery_ended = true;
                }
            }
        }
        Ok(())
    }

    fn on_discovery_error(&mut self, error: BoxError) -> Result<(), BoxError> {
        match self.settings.on_discovery_failure {
            builder::DiscoveryFailure::KeepLastKnown => {
                tracing::warn!(%error, endpoints = self.set.total(), "discovery failed; keeping the last known endpoints");
                Ok(())
            }
            builder::DiscoveryFailure::Fail => Err(error),
        }
    }

    fn apply(&mut self, change: Change<D::Key, D::Service>) {
        match change {
            Change::Insert(key, service) => {
                if let Some(slot) = self.set.slot_of_key(&key) {
                    self.remove(slot, "endpoint replaced");
                }
                self.insert(key, service);
            }
            Change::Remove(key) => {
                if let Some(slot) = self.set.slot_of_key(&key) {
                    self.remove(slot, "endpoint removed");
                }
            }
        }
    }

    fn insert(&mut self, key: D::Key, service: D::Service) {
        let serial = self.next_serial;
        self.next_serial += 1;
        let weight = self.weight_by.as_ref().map_or(1, |weight| weight(&key));
        let breaker = self
            .settings
            .outlier
            .clone()
            .map(|config| self.breaker(&key, serial, config));
        if let Some(checks) = &self.checks {
            checks.add(serial, key.clone());
        }
        let endpoint = Endpoint::new(
            key.clone(),
            serial,
            service,
            weight,
            stable_hash(&key),
            Arc::new(self.stats(&key)),
            breaker,
            self.settings.retry_initial,
        );
        self.set.insert(endpoint);
        if !self.drained.is_empty() && self.drained.contains(&key) {
            let slot = self.set.total() - 1;
            self.set
                .set_health(slot, |health| health.manual_down = true);
        }
        self.membership_changed();
        tracing::debug!(endpoint = ?key, weight, endpoints = self.set.total(), "endpoint added");
    }

    fn remove(&mut self, slot: usize, message: &'static str) {
        let removed = self.set.remove(slot);
        if let Some(checks) = &self.checks {
            checks.remove(removed.serial);
        }
        self.membership_changed();
        tracing::debug!(endpoint = ?removed.key, endpoints = self.set.total(), "{message}");
    }

    fn membership_changed(&mut self) {
        self.picker.membership_changed();
        if let Some(selector) = &mut self.selector {
            selector.membership_changed();
        }
    }

    fn stats(&self, _key: &D::Key) -> EndpointStats {
        EndpointStats::new(
            self.settings.default_rtt,
            self.settings.rtt_decay,
            #[cfg(feature = "metrics")]
            telemetry::EndpointMetrics::new(format!("{_key:?}")),
        )
    }

    /// A breaker for one endpoint, reporting its state changes as health signals.
    fn breaker(&self, key: &D::Key, serial: u64, config: CircuitBreakerConfig) -> CircuitBreaker {
        let breaker = CircuitBreaker::new(format!("{key:?}"), config);
        let signals: Weak<Signals<D::Key>> = Arc::downgrade(&self.signals);
        breaker.on_state_change(move |change| {
            let healthy = match change.to {
                CircuitState::Open | CircuitState::ForcedOpen => false,
                CircuitState::Closed => true,
                _ => return,
            };
            if let Some(signals) = signals.upgrade() {
                signals.send(Signal {
                    target: Target::Serial(serial),
                    source: Source::Breaker,
                    healthy,
                });
            }
        });
        breaker
    }
}

// ===== health =====

impl<D: Discover, Req, C> LoadBalancer<D, Req, C>
where
    D::Key: Hash + Clone + fmt::Debug + Send + Sync + 'static,
{
    fn apply_signals(&mut self) {
        for signal in self.signals.take() {
            if let (Source::Manual, Target::Key(key)) = (signal.source, &signal.target) {
                self.remember_mark(key, signal.healthy);
            }
            let slot = match &signal.target {
                Target::Key(key) => self.set.slot_of_key(key),
                Target::Serial(serial) => self.set.slot_of_serial(*serial),
            };
            let Some(slot) = slot else { continue };
            let healthy = signal.healthy;
            match signal.source {
                Source::Manual => self.set_flag(slot, "marked", healthy, |h| &mut h.manual_down),
                Source::Check => {
                    self.set_flag(slot, "health check", healthy, |h| &mut h.check_down)
                }
                Source::Breaker if healthy => self.restore(slot),
                Source::Breaker => self.eject(slot),
            }
        }
    }

    fn remember_mark(&mut self, key: &D::Key, healthy: bool) {
        if healthy {
            self.drained.remove(key);
        } else {
            self.drained.insert(key.clone());
        }
    }

    fn set_flag(
        &mut self,
        slot: usize,
        cause: &'static str,
        healthy: bool,
        flag: impl FnOnce(&mut set::Health) -> &mut bool,
    ) {
        let before = self.set.set_health(slot, |health| *flag(health) = !healthy);
        let after = self.set.get(slot).health();
        if before != after {
            let key = &self.set.get(slot).key;
            if healthy {
                tracing::debug!(endpoint = ?key, cause, "endpoint restored");
            } else {
                tracing::debug!(endpoint = ?key, cause, "endpoint taken out of rotation");
            }
        }
    }

    /// The endpoint's breaker opened: eject it until the breaker lets probes in,
    /// unless that would eject too many endpoints.
    fn eject(&mut self, slot: usize) {
        let endpoint = self.set.get(slot);
        let Some(breaker) = endpoint.breaker.clone() else {
            return;
        };
        if endpoint.health().ejected {
            return;
        }
        let allowed = (self.set.ejected() + 1) * 100
            <= self.set.total() * self.settings.max_ejection_percent as usize;
        if !allowed {
            tracing::debug!(endpoint = ?endpoint.key, "ejection refused: too many endpoints ejected");
            breaker.reset();
            return;
        }
        let wait = match breaker.try_acquire() {
            Err(open) => open.retry_after().unwrap_or(self.settings.retry_initial),
            Ok(_probe) => Duration::ZERO,
        };
        let serial = endpoint.serial;
        self.set.set_health(slot, |health| health.ejected = true);
        self.timers
            .schedule(Instant::now() + wait, serial, Timer::EndEjection);
        tracing::debug!(endpoint = ?self.set.get(slot).key, ejected_for = ?wait, "endpoint ejected");
    }

    /// The endpoint's breaker closed: its probes succeeded (or an ejection was
    /// refused and the breaker reset, which changes nothing here).
    fn restore(&mut self, slot: usize) {
        let before = self.set.set_health(slot, |health| health.ejected = false);
        let probing = self.set.get(slot).breaker.is_some() && !before.ejected;
        if before.ejected || probing {
            tracing::debug!(endpoint = ?self.set.get(slot).key, "endpoint restored");
        }
    }

    fn on_timer(&mut self, serial: u64, timer: Timer) {
        let Some(slot) = self.set.slot_of_serial(serial) else {
            return;
        };
        match timer {
            Timer::EndEjection => {
                self.set.set_health(slot, |health| health.ejected = false);
                tracing::debug!(endpoint = ?self.set.get(slot).key, "ejection ended; probing");
            }
            Timer::RetryReadiness => self.set.mark_unready(slot),
        }
    }

    fn poll_timers(&mut self, cx: &mut Context<'_>) {
        for (serial, timer) in self.timers.poll_due(cx) {
            self.on_timer(serial, timer);
        }
    }
}

// ===== readiness =====

impl<D: Discover, Req, C> LoadBalancer<D, Req, C>
where
    D::Key: Hash + Clone + fmt::Debug + Send + Sync + 'static,
    D::Service: Service<Req>,
    <D::Service as Service<Req>>::Error: Into<BoxError>,
{
    /// Polls every endpoint that is new or took a call since it was last ready.
    fn poll_unready(&mut self, cx: &mut Context<'_>) {
        let mut position = self.set.unready_len();
        // Downwards: an endpoint leaving the list is replaced by one already polled.
        while position > 0 {
            position -= 1;
            let slot = self.set.unready_slot(position);
            match self.set.get_mut(slot).service.poll_ready(cx) {
                Poll::Pending => {}
                Poll::Ready(Ok(())) => self.on_ready(slot),
                Poll::Ready(Err(error)) => self.on_not_ready(slot, error.into()),
            }
        }
    }

    fn on_ready(&mut self, slot: usize) {
        self.set.mark_ready(slot);
        if self.set.get(slot).health().failed {
            self.set.set_health(slot, |health| health.failed = false);
            let endpoint = self.set.get_mut(slot);
            endpoint.retry_backoff = self.settings.retry_initial;
            tracing::debug!(endpoint = ?endpoint.key, "endpoint ready again; restored");
        }
    }

    fn on_not_ready(&mut self, slot: usize, error: BoxError) {
        self.set.park(slot);
        self.set.set_health(slot, |health| health.failed = true);
        let max = self.settings.retry_max;
        let endpoint = self.set.get_mut(slot);
        let wait = endpoint.retry_backoff;
        endpoint.retry_backoff = (wait * 2).min(max);
        let serial = endpoint.serial;
        tracing::debug!(endpoint = ?endpoint.key, %error, retry_in = ?wait, "endpoint failed readiness; out of rotation");
        self.timers
            .schedule(Instant::now() + wait, serial, Timer::RetryReadiness);
    }

    /// Nothing can take a call: fail the next call, now or after the wait.
    fn poll_unavailable(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        let total = self.set.total();
        let Some(wait) = self.settings.wait_for_instance else {
            self.fail_next = Some(NoHealthyInstanceError::new(total, Duration::ZERO));
            return Poll::Ready(Ok(()));
        };
        let waiting = self.waiting.get_or_insert_with(|| {
            let since = Instant::now();
            let sleep = Box::pin(sleep_until(since + wait));
            Waiting { since, sleep }
        });
        if waiting.sleep.as_mut().poll(cx).is_ready() {
            let waited = Instant::now().saturating_duration_since(waiting.since);
            self.fail_next = Some(NoHealthyInstanceError::new(total, waited));
            return Poll::Ready(Ok(()));
        }
        self.signals.register(cx.waker());
        Poll::Pending
    }
}

// ===== calls =====

impl<D: Discover, Req, C> LoadBalancer<D, Req, C>
where
    D::Key: Hash + Clone + fmt::Debug + Send + Sync + 'static,
    D::Service: Service<Req>,
{
    /// The endpoint the strategy chooses for `request`.
    fn select(&mut self, request: &Req) -> Option<usize> {
        let Some(selector) = &mut self.selector else {
            let key = self.hash_key.as_ref().map(|key| key(request));
            return self.picker.pick(&self.set, key);
        };
        let total = self.set.total();
        match selector.select(request, &self.set) {
            Some(index) if index < total && self.set.is_available(index) => Some(index),
            Some(index) if total > 0 => first_available(&self.set, index % total),
            _ => None,
        }
    }

    /// Asks the chosen endpoint's breaker for admission, moving on to the next
    /// available endpoint while breakers refuse.
    fn admit(&self, first: usize) -> Option<(usize, Option<Permit>)> {
        let total = self.set.total();
        for offset in 0..total {
            let slot = (first + offset) % total;
            if offset > 0 && !self.set.is_available(slot) {
                continue;
            }
            let endpoint = self.set.get(slot);
            let Some(breaker) = &endpoint.breaker else {
                return Some((slot, None));
            };
            match breaker.try_acquire() {
                Ok(permit) => return Some((slot, Some(permit))),
                // Only the panic threshold sends calls to unhealthy endpoints, and
                // then their breakers are overridden.
                Err(_) if !endpoint.health().is_healthy() => return Some((slot, None)),
                Err(_) => continue,
            }
        }
        None
    }

    fn no_instance(&self) -> NoHealthyInstanceError {
        NoHealthyInstanceError::new(self.set.total(), Duration::ZERO)
    }
}

impl<D, Req, C> Service<Req> for LoadBalancer<D, Req, C>
where
    D: Discover,
    D::Key: Hash + Clone + fmt::Debug + Send + Sync + 'static,
    D::Error: Into<BoxError>,
    D::Service: Service<Req>,
    <D::Service as Service<Req>>::Error: Into<BoxError>,
    C: Classify<<D::Service as Service<Req>>::Response, <D::Service as Service<Req>>::Error>
        + Clone,
{
    type Response = <D::Service as Service<Req>>::Response;
    type Error = BoxError;
    type Future = ResponseFuture<<D::Service as Service<Req>>::Future, C>;

    /// Takes in discovery changes and health news, then waits for an endpoint.
    ///
    /// - `Ready(Ok(()))` when an available endpoint is ready, and also when none
    ///   can take a call (at once, or once
    ///   [`wait_for_instance`](LoadBalancerBuilder::wait_for_instance) has passed):
    ///   the next `call` then fails with [`NoHealthyInstanceError`].
    /// - `Pending` while healthy endpoints exist but none is ready, or while
    ///   waiting for an instance to appear.
    /// - `Err` only with a discovery error under [`DiscoveryFailure::Fail`].
    ///   Endpoint readiness errors never fail it: such endpoints are taken out of
    ///   rotation and polled again later.
    /// - Reserves nothing: the endpoint is chosen in `call`, where the request is
    ///   known.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if let Some(checks) = &mut self.checks {
            checks.start(&self.signals);
        }
        self.poll_discovery(cx)?;
        self.apply_signals();
        self.poll_timers(cx);
        self.poll_unready(cx);

        if self.set.has_ready() {
            self.waiting = None;
            self.fail_next = None;
            return Poll::Ready(Ok(()));
        }
        if self.set.has_eligible() {
            // Healthy endpoints exist; their `poll_ready` will wake us.
            self.signals.register(cx.waker());
            return Poll::Pending;
        }
        self.poll_unavailable(cx)
    }

    /// Sends `request` to the endpoint the strategy picks.
    ///
    /// The call fails with [`NoHealthyInstanceError`] when `poll_ready` found no
    /// endpoint able to take it, when it was not preceded by a successful
    /// `poll_ready`, or when every available endpoint's breaker refused it.
    fn call(&mut self, request: Req) -> Self::Future {
        if let Some(error) = self.fail_next.take() {
            return ResponseFuture::failed(error);
        }
        self.set.now = self.track_latency.then(Instant::now);
        let Some(first) = self.select(&request) else {
            return ResponseFuture::failed(self.no_instance());
        };
        let Some((slot, permit)) = self.admit(first) else {
            return ResponseFuture::failed(self.no_instance());
        };
        self.dispatch(slot, permit, request)
    }
}

impl<D, Req, C> LoadBalancer<D, Req, C>
where
    D: Discover,
    D::Key: Hash + Clone + fmt::Debug + Send + Sync + 'static,
    D::Service: Service<Req>,
    C: Classify<<D::Service as Service<Req>>::Response, <D::Service as Service<Req>>::Error>
        + Clone,
{
    fn dispatch(
        &mut self,
        slot: usize,
        permit: Option<Permit>,
        request: Req,
    ) -> ResponseFuture<<D::Service as Service<Req>>::Future, C> {
        let needs_latency = self.track_latency
            || (permit.is_some() && (self.classifier.needs_latency() || self.slow_calls_tracked()));
        let started = needs_latency.then(|| self.set.now.unwrap_or_else(Instant::now));
        let classifier = permit.as_ref().map(|_| self.classifier.clone());

        let endpoint = self.set.get_mut(slot);
        tracing::trace!(endpoint = ?endpoint.key, "call dispatched");
        let stats = endpoint.stats.clone();
        stats.call_started();
        let future = endpoint.service.call(request);
        self.set.mark_unready(slot);

        let record = CallRecord {
            stats,
            permit,
            classifier,
            started,
            track_latency: self.track_latency,
        };
        ResponseFuture::called(future, record)
    }

    fn slow_calls_tracked(&self) -> bool {
        let outlier = self.settings.outlier.as_ref();
        outlier.is_some_and(|config| config.slow_call_duration().is_some())
    }
}

impl<D: Discover, Req, C: fmt::Debug> fmt::Debug for LoadBalancer<D, Req, C>
where
    D::Key: Hash + Clone,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadBalancer")
            .field("strategy", &self.picker.strategy())
            .field("endpoints", &self.set.total())
            .field("panicking", &self.set.is_panicking())
            .field("discovery_ended", &self.discovery_ended)
            .field("classifier", &self.classifier)
            .finish_non_exhaustive()
    }
}
