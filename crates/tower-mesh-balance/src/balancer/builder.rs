//! [`LoadBalancerBuilder`]: every setting of a [`LoadBalancer`], validated at once.

use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use tower::discover::Discover;
use tower_mesh_breaker::CircuitBreakerConfig;
use tower_mesh_core::{ConfigError, ErrorsAsFailures};

use super::LoadBalancer;
use crate::check::{ActiveHealthCheck, HealthCheck};
use crate::rand::{random_seed, stable_hash};
use crate::strategy::SelectEndpoint;
use crate::LoadBalancerStrategy;

/// What the balancer does when its discovery stream fails or ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DiscoveryFailure {
    /// Keep balancing over the last known endpoints. After an error the stream is
    /// polled again on the next `poll_ready` (it may recover); once it has ended it
    /// is never polled again. The error is logged at `warn`.
    #[default]
    KeepLastKnown,
    /// Fail `poll_ready` with the stream's error (boxed), the way tower's own
    /// balancer does. Like every `poll_ready` error this is terminal: callers such
    /// as `Buffer` stop using the balancer. An ended stream still keeps the last
    /// known endpoints.
    Fail,
}

pub(crate) type HashKeyFn<Req> = Arc<dyn Fn(&Req) -> u64 + Send + Sync>;
pub(crate) type WeightFn<K> = Box<dyn Fn(&K) -> u32 + Send + Sync>;
pub(crate) type Checker<K> = (Arc<dyn HealthCheck<K>>, ActiveHealthCheck);

/// Settings that do not depend on the balancer's type parameters.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) strategy: LoadBalancerStrategy,
    pub(crate) outlier: Option<CircuitBreakerConfig>,
    pub(crate) max_ejection_percent: u32,
    pub(crate) panic_threshold: u32,
    pub(crate) wait_for_instance: Option<Duration>,
    pub(crate) on_discovery_failure: DiscoveryFailure,
    pub(crate) retry_initial: Duration,
    pub(crate) retry_max: Duration,
    pub(crate) default_rtt: Duration,
    pub(crate) rtt_decay: Duration,
    pub(crate) seed: u64,
}

/// Builds a [`LoadBalancer`]; start with [`LoadBalancer::builder`].
///
/// Setters never fail; [`build`](Self::build) checks every value and reports the
/// first one that makes no sense as a [`ConfigError`] naming the setter.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use tower::discover::ServiceList;
/// use tower::service_fn;
/// use tower_mesh_balance::{LoadBalancer, LoadBalancerStrategy};
/// use tower_mesh_breaker::CircuitBreakerConfig;
///
/// let echo = service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n) });
/// let endpoints = ServiceList::new(vec![echo]);
/// let outliers = CircuitBreakerConfig::builder()
///     .failure_threshold(5)
///     .open_duration(Duration::from_secs(10))
///     .open_duration_growth(2.0, Duration::from_secs(300))
///     .build()?;
/// let balancer = LoadBalancer::builder(endpoints)
///     .strategy(LoadBalancerStrategy::PeakEwma)
///     .outlier_detection(outliers)
///     .max_ejection_percent(30)
///     .panic_threshold(50)
///     .wait_for_instance(Duration::from_millis(500))
///     .build()?;
/// # let _: &LoadBalancer<_, u32> = &balancer;
///
/// let wrong = LoadBalancer::<_, u32>::builder(ServiceList::new(vec![echo]))
///     .panic_threshold(150)
///     .build();
/// assert_eq!(wrong.unwrap_err().field(), "panic_threshold");
/// # Ok::<(), tower_mesh_core::ConfigError>(())
/// ```
pub struct LoadBalancerBuilder<D: Discover, Req, C = ErrorsAsFailures> {
    pub(crate) discover: D,
    pub(crate) settings: Settings,
    pub(crate) classifier: C,
    pub(crate) hash_key: Option<HashKeyFn<Req>>,
    pub(crate) selector: Option<Box<dyn SelectEndpoint<Req>>>,
    pub(crate) weight_by: Option<WeightFn<D::Key>>,
    pub(crate) checks: Option<Checker<D::Key>>,
    pub(crate) _request: PhantomData<fn(Req)>,
}

impl<D: Discover, Req> LoadBalancerBuilder<D, Req> {
    pub(crate) fn new(discover: D) -> Self {
        LoadBalancerBuilder {
            discover,
            settings: Settings {
                strategy: LoadBalancerStrategy::RoundRobin,
                outlier: None,
                max_ejection_percent: 50,
                panic_threshold: 0,
                wait_for_instance: None,
                on_discovery_failure: DiscoveryFailure::KeepLastKnown,
                retry_initial: Duration::from_secs(1),
                retry_max: Duration::from_secs(30),
                default_rtt: Duration::from_millis(10),
                rtt_decay: Duration::from_secs(10),
                seed: random_seed(),
            },
            classifier: ErrorsAsFailures,
            hash_key: None,
            selector: None,
            weight_by: None,
            checks: None,
            _request: PhantomData,
        }
    }
}

impl<D: Discover, Req, C> LoadBalancerBuilder<D, Req, C> {
    /// The built-in strategy (default [`RoundRobin`](LoadBalancerStrategy::RoundRobin)).
    pub fn strategy(mut self, strategy: LoadBalancerStrategy) -> Self {
        self.settings.strategy = strategy;
        self
    }

    /// The key consistent hashing routes on, taken from each request.
    ///
    /// Needed by [`ConsistentHash`](LoadBalancerStrategy::ConsistentHash); the key is
    /// hashed the same way in every process, so every client sends a key to the
    /// same instance.
    pub fn hash_key<F, T>(mut self, key: F) -> Self
    where
        F: Fn(&Req) -> T + Send + Sync + 'static,
        T: Hash,
    {
        self.hash_key = Some(Arc::new(move |request: &Req| stable_hash(&key(request))));
        self
    }

    /// A strategy of your own, used instead of [`strategy`](Self::strategy).
    pub fn selector(mut self, selector: impl SelectEndpoint<Req> + 'static) -> Self {
        self.selector = Some(Box::new(selector));
        self
    }

    /// Where each endpoint's weight comes from (default: every weight is 1).
    ///
    /// For a [`ServiceRegistry`](crate::ServiceRegistry) stream, pass
    /// [`InstanceKey::weight`](crate::InstanceKey::weight). A weight of 0 counts as 1.
    pub fn weight_by(mut self, weight: impl Fn(&D::Key) -> u32 + Send + Sync + 'static) -> Self {
        self.weight_by = Some(Box::new(weight));
        self
    }

    /// Judges calls for outlier detection with `classifier` (default: every error
    /// is a failure).
    pub fn classifier<C2>(self, classifier: C2) -> LoadBalancerBuilder<D, Req, C2> {
        LoadBalancerBuilder {
            discover: self.discover,
            settings: self.settings,
            classifier,
            hash_key: self.hash_key,
            selector: self.selector,
            weight_by: self.weight_by,
            checks: self.checks,
            _request: PhantomData,
        }
    }

    /// Gives every endpoint its own circuit breaker with this configuration: an
    /// endpoint whose breaker opens is ejected for the breaker's open duration
    /// (growing with `open_duration_growth`), then probed through half-open calls.
    pub fn outlier_detection(mut self, config: CircuitBreakerConfig) -> Self {
        self.settings.outlier = Some(config);
        self
    }

    /// The most endpoints, in percent of all, that outlier detection may eject at
    /// once (default 50). A breaker that opens beyond it is reset and its endpoint
    /// stays in rotation.
    pub fn max_ejection_percent(mut self, percent: u32) -> Self {
        self.settings.max_ejection_percent = percent;
        self
    }

    /// When fewer than this percentage of endpoints are healthy, spread calls over
    /// every endpoint that was not drained by hand or broken, ignoring ejections
    /// and failed checks (default 0: never).
    pub fn panic_threshold(mut self, percent: u32) -> Self {
        self.settings.panic_threshold = percent;
        self
    }

    /// With no endpoint able to take calls, wait up to this long for one before
    /// failing calls with [`NoHealthyInstanceError`](crate::NoHealthyInstanceError)
    /// (default: fail at once). Once a wait has run out, calls fail at once until
    /// an endpoint can take calls again, so queued callers do not each wait in turn.
    pub fn wait_for_instance(mut self, wait: Duration) -> Self {
        self.settings.wait_for_instance = Some(wait);
        self
    }

    /// What to do when the discovery stream fails or ends (default
    /// [`DiscoveryFailure::KeepLastKnown`]).
    pub fn on_discovery_failure(mut self, failure: DiscoveryFailure) -> Self {
        self.settings.on_discovery_failure = failure;
        self
    }

    /// After an endpoint's `poll_ready` fails, poll it again after `initial`,
    /// doubling the wait on each further failure up to `max` (default 1 s to 30 s).
    pub fn readiness_retry(mut self, initial: Duration, max: Duration) -> Self {
        self.settings.retry_initial = initial;
        self.settings.retry_max = max;
        self
    }

    /// Peak-EWMA settings: the latency assumed for a new endpoint (default 10 ms)
    /// and the time over which old latencies fade (default 10 s).
    pub fn peak_ewma(mut self, default_rtt: Duration, decay: Duration) -> Self {
        self.settings.default_rtt = default_rtt;
        self.settings.rtt_decay = decay;
        self
    }

    /// Runs `checker` against every endpoint as configured by `config`.
    pub fn active_health_check(
        mut self,
        checker: impl HealthCheck<D::Key>,
        config: ActiveHealthCheck,
    ) -> Self {
        self.checks = Some((Arc::new(checker), config));
        self
    }

    /// Seeds the random strategies, for reproducible picks.
    pub fn seed(mut self, seed: u64) -> Self {
        self.settings.seed = seed;
        self
    }

    /// Checks every setting and builds the balancer.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first setting that is out of range, or
    /// `hash_key` when consistent hashing is chosen without a key.
    pub fn build(self) -> Result<LoadBalancer<D, Req, C>, ConfigError>
    where
        D::Key: Hash + Clone + Send + Sync + 'static,
    {
        self.validate()?;
        Ok(LoadBalancer::from_builder(self))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let settings = &self.settings;
        check_percent("max_ejection_percent", settings.max_ejection_percent)?;
        check_percent("panic_threshold", settings.panic_threshold)?;
        let needs_key =
            settings.strategy == LoadBalancerStrategy::ConsistentHash && self.selector.is_none();
        if needs_key && self.hash_key.is_none() {
            let reason = "consistent hashing needs a key taken from the request";
            return Err(ConfigError::new("hash_key", reason));
        }
        if settings
            .wait_for_instance
            .is_some_and(|wait| wait.is_zero())
        {
            let reason = "must be greater than zero; leave it unset to fail at once";
            return Err(ConfigError::new("wait_for_instance", reason));
        }
        if settings.retry_initial.is_zero() || settings.retry_max < settings.retry_initial {
            let reason = format!(
                "needs 0 < initial <= max, got {:?} and {:?}",
                settings.retry_initial, settings.retry_max
            );
            return Err(ConfigError::new("readiness_retry", reason));
        }
        if settings.default_rtt.is_zero() || settings.rtt_decay.is_zero() {
            return Err(ConfigError::new(
                "peak_ewma",
                "both durations must be greater than zero",
            ));
        }
        Ok(())
    }
}

fn check_percent(field: &'static str, value: u32) -> Result<(), ConfigError> {
    if value > 100 {
        return Err(ConfigError::new(
            field,
            format!("must be in 0..=100, got {value}"),
        ));
    }
    Ok(())
}

impl<D: Discover, Req, C: fmt::Debug> fmt::Debug for LoadBalancerBuilder<D, Req, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadBalancerBuilder")
            .field("settings", &self.settings)
            .field("classifier", &self.classifier)
            .finish_non_exhaustive()
    }
}
