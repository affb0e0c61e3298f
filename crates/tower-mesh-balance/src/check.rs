//! Active health checks: a [`HealthCheck`] run against every endpoint on an
//! interval, with thresholds so that one lost probe does not flap an endpoint.
//!
//! An endpoint starts healthy. After
//! [`unhealthy_threshold`](ActiveHealthCheckBuilder::unhealthy_threshold) failed
//! checks in a row it leaves the rotation; after
//! [`healthy_threshold`](ActiveHealthCheckBuilder::healthy_threshold) passed checks
//! in a row it comes back. A check that outlasts
//! [`timeout`](ActiveHealthCheckBuilder::timeout) has failed.
//!
//! The checks run on a task that the balancer spawns on the current tokio runtime
//! the first time it is polled; the task ends when the balancer is dropped.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tower_mesh_core::ConfigError;

use crate::balancer::signals::{Signal, Signals, Source, Target};
use crate::InstanceKey;

/// The future of one check: `true` when the endpoint passed.
pub type CheckFuture = Pin<Box<dyn Future<Output = bool> + Send + 'static>>;

/// Checks one endpoint, given its discovery key.
///
/// # Example
///
/// ```
/// use tower_mesh_balance::{CheckFuture, HealthCheck};
///
/// /// Passes endpoints whose key is even (a stand-in for a real probe).
/// struct EvenKeys;
///
/// impl HealthCheck<u32> for EvenKeys {
///     fn check(&self, key: &u32) -> CheckFuture {
///         let passed = key % 2 == 0;
///         Box::pin(async move { passed })
///     }
/// }
/// ```
pub trait HealthCheck<K>: Send + Sync + 'static {
    /// Starts a check of the endpoint known as `key`.
    fn check(&self, key: &K) -> CheckFuture;
}

impl<K, F> HealthCheck<K> for F
where
    F: Fn(&K) -> CheckFuture + Send + Sync + 'static,
{
    fn check(&self, key: &K) -> CheckFuture {
        self(key)
    }
}

// ===== TcpConnectCheck =====

/// Passes when a TCP connection to the endpoint's address opens; the connection
/// is closed at once.
///
/// It checks [`InstanceKey`]s (at [`address`](crate::ServiceInstance::address)),
/// [`SocketAddr`]s, and `String`s of the form `host:port`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpConnectCheck;

impl TcpConnectCheck {
    async fn connect(address: String) -> bool {
        TcpStream::connect(address.as_str()).await.is_ok()
    }
}

impl HealthCheck<InstanceKey> for TcpConnectCheck {
    fn check(&self, key: &InstanceKey) -> CheckFuture {
        Box::pin(Self::connect(key.instance().address()))
    }
}

impl HealthCheck<SocketAddr> for TcpConnectCheck {
    fn check(&self, key: &SocketAddr) -> CheckFuture {
        let address = *key;
        Box::pin(async move { TcpStream::connect(address).await.is_ok() })
    }
}

impl HealthCheck<String> for TcpConnectCheck {
    fn check(&self, key: &String) -> CheckFuture {
        Box::pin(Self::connect(key.clone()))
    }
}

// ===== configuration =====

/// How often checks run and how many results in a row change an endpoint's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveHealthCheck {
    interval: Duration,
    timeout: Duration,
    healthy_threshold: u32,
    unhealthy_threshold: u32,
}

impl Default for ActiveHealthCheck {
    fn default() -> Self {
        ActiveHealthCheck {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
        }
    }
}

impl ActiveHealthCheck {
    /// A builder starting from the defaults: every 10 s, 1 s timeout, unhealthy
    /// after 3 failures in a row, healthy again after 2 passes in a row.
    pub fn builder() -> ActiveHealthCheckBuilder {
        ActiveHealthCheckBuilder {
            config: ActiveHealthCheck::default(),
        }
    }

    /// Time between rounds of checks.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// How long one check may take before it counts as failed.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Passed checks in a row that restore an unhealthy endpoint.
    pub fn healthy_threshold(&self) -> u32 {
        self.healthy_threshold
    }

    /// Failed checks in a row that take a healthy endpoint out of rotation.
    pub fn unhealthy_threshold(&self) -> u32 {
        self.unhealthy_threshold
    }
}

/// Builds an [`ActiveHealthCheck`]; see [`ActiveHealthCheck::builder`].
#[derive(Debug, Clone)]
pub struct ActiveHealthCheckBuilder {
    config: ActiveHealthCheck,
}

impl ActiveHealthCheckBuilder {
    /// Time between rounds of checks (default 10 s).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.config.interval = interval;
        self
    }

    /// How long one check may take (default 1 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// Passed checks in a row that restore an endpoint (default 2).
    pub fn healthy_threshold(mut self, checks: u32) -> Self {
        self.config.healthy_threshold = checks;
        self
    }

    /// Failed checks in a row that take an endpoint out (default 3).
    pub fn unhealthy_threshold(mut self, checks: u32) -> Self {
        self.config.unhealthy_threshold = checks;
        self
    }

    /// Checks the values.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first zero duration or threshold.
    pub fn build(self) -> Result<ActiveHealthCheck, ConfigError> {
        let config = self.config;
        if config.interval.is_zero() {
            return Err(ConfigError::new("interval", "must be greater than zero"));
        }
        if config.timeout.is_zero() {
            return Err(ConfigError::new("timeout", "must be greater than zero"));
        }
        if config.healthy_threshold == 0 {
            return Err(ConfigError::new("healthy_threshold", "must be at least 1"));
        }
        if config.unhealthy_threshold == 0 {
            return Err(ConfigError::new(
                "unhealthy_threshold",
                "must be at least 1",
            ));
        }
        Ok(config)
    }
}

// ===== the checking task =====

/// The endpoints to check, by serial; the balancer keeps it in step.
pub(crate) struct Targets<K> {
    map: Mutex<HashMap<u64, K>>,
}

impl<K: Clone> Targets<K> {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, K>> {
        self.map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn snapshot(&self) -> Vec<(u64, K)> {
        let map = self.lock();
        map.iter()
            .map(|(serial, key)| (*serial, key.clone()))
            .collect()
    }
}

/// The balancer's side of active checking.
pub(crate) struct ActiveChecks<K> {
    checker: Arc<dyn HealthCheck<K>>,
    config: ActiveHealthCheck,
    targets: Arc<Targets<K>>,
    started: bool,
}

impl<K: Clone + Send + Sync + 'static> ActiveChecks<K> {
    pub(crate) fn new(checker: Arc<dyn HealthCheck<K>>, config: ActiveHealthCheck) -> Self {
        ActiveChecks {
            checker,
            config,
            targets: Arc::new(Targets {
                map: Mutex::new(HashMap::new()),
            }),
            started: false,
        }
    }

    pub(crate) fn add(&self, serial: u64, key: K) {
        self.targets.lock().insert(serial, key);
    }

    pub(crate) fn remove(&self, serial: u64) {
        self.targets.lock().remove(&serial);
    }

    /// Spawns the checking task once, if a tokio runtime is running.
    pub(crate) fn start(&mut self, signals: &Arc<Signals<K>>) {
        if self.started {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        self.started = true;
        let round = Round {
            checker: self.checker.clone(),
            config: self.config,
            targets: Arc::downgrade(&self.targets),
            signals: Arc::downgrade(signals),
        };
        runtime.spawn(round.run());
    }
}

impl<K> fmt::Debug for ActiveChecks<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActiveChecks")
            .field("config", &self.config)
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

struct Round<K> {
    checker: Arc<dyn HealthCheck<K>>,
    config: ActiveHealthCheck,
    targets: Weak<Targets<K>>,
    signals: Weak<Signals<K>>,
}

/// One endpoint's run of results.
#[derive(Debug, Clone, Copy)]
struct Tally {
    healthy: bool,
    streak: u32,
}

impl Tally {
    /// Counts a result; returns the new health when it changes.
    fn record(&mut self, passed: bool, config: &ActiveHealthCheck) -> Option<bool> {
        if passed == self.healthy {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if self.healthy {
            config.unhealthy_threshold
        } else {
            config.healthy_threshold
        };
        if self.streak < needed {
            return None;
        }
        self.healthy = passed;
        self.streak = 0;
        Some(passed)
    }
}

impl<K: Clone + Send + Sync + 'static> Round<K> {
    async fn run(self) {
        let mut tallies: HashMap<u64, Tally> = HashMap::new();
        let mut ticker = tokio::time::interval(self.config.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let Some(targets) = self.targets.upgrade() else {
                return;
            };
            let snapshot = targets.snapshot();
            drop(targets);
            let live: HashSet<u64> = snapshot.iter().map(|(serial, _)| *serial).collect();
            tallies.retain(|serial, _| live.contains(serial));
            for (serial, passed) in self.check_all(snapshot).await {
                let tally = tallies.entry(serial).or_insert(Tally {
                    healthy: true,
                    streak: 0,
                });
                let Some(healthy) = tally.record(passed, &self.config) else {
                    continue;
                };
                let Some(signals) = self.signals.upgrade() else {
                    return;
                };
                signals.send(Signal {
                    target: Target::Serial(serial),
                    source: Source::Check,
                    healthy,
                });
            }
        }
    }

    /// Runs every check of one round at once, each under the timeout.
    async fn check_all(&self, targets: Vec<(u64, K)>) -> Vec<(u64, bool)> {
        let mut running = JoinSet::new();
        for (serial, key) in targets {
            let check = self.checker.check(&key);
            let timeout = self.config.timeout;
            running.spawn(async move {
                let passed = tokio::time::timeout(timeout, check).await.unwrap_or(false);
                (serial, passed)
            });
        }
        let mut results = Vec::new();
        while let Some(finished) = running.join_next().await {
            if let Ok(result) = finished {
                results.push(result);
            }
        }
        results
    }
}
