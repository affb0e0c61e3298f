//! [`ServiceProxyBuilder`]: every setting of a [`ServiceProxy`], checked at once.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use tower::discover::Discover;
use tower::layer::util::{Identity, Stack};
use tower::ServiceBuilder;
use tower_layer::Layer;
use tower_mesh_balance::{
    ActiveHealthCheck, HealthCheck, LoadBalancer, LoadBalancerBuilder, LoadBalancerStrategy,
    SharedBalancer,
};
use tower_mesh_breaker::{
    CircuitBreaker, CircuitBreakerConfig, CircuitBreakerLayer, SlidingWindow,
};
use tower_mesh_core::{BoxError, Classify, ConfigError, ErrorsAsFailures};
use tower_mesh_retry::{
    AnyFailure, CloneRequest, ReplayRequest, Retry, RetryBudget, RetryPolicy, Retryable,
};
use tower_service::Service;

use super::call::Calls;
use super::count::CountLayer;
use super::deadline::AttemptTimeoutLayer;
use super::health::WatchedBalancer;
use super::{Counters, Parts, ServiceProxy};

/// The response of a discovered endpoint.
type EndpointResponse<D, Req> = <<D as Discover>::Service as Service<Req>>::Response;

/// The error of a discovered endpoint.
type EndpointError<D, Req> = <<D as Discover>::Service as Service<Req>>::Error;

/// Builds a [`ServiceProxy`]; start with [`ServiceProxy::builder`].
///
/// Setters never fail. [`build`](Self::build) (over a discovery source) and
/// [`build_client`](Self::build_client) (over one client) check every value and
/// report the first that makes no sense as a [`ConfigError`] naming the setter.
///
/// The type parameters follow the settings that change types: the classifier
/// `C`, the retry policy's predicate `R` and replay hook `P`, your layers `L`,
/// and the active health check `H`. They are inferred; a program never names
/// them.
///
/// # Defaults
///
/// | setting | default |
/// |---|---|
/// | [`timeout`](Self::timeout) | 10 s for the whole call |
/// | [`attempt_timeout`](Self::attempt_timeout) | the overall timeout |
/// | [`retry`](Self::retry) | 3 retries, 100 ms doubling with ±50 % jitter, a [`RetryBudget::default`] (20 % extra load plus 10 retries a second) |
/// | [`circuit_breaker`](Self::circuit_breaker) | opens when half of the last 100 attempts failed (at least 20 counted), 5 s open |
/// | [`classifier`](Self::classifier) | every error is a failure |
/// | [`strategy`](Self::strategy) | round robin |
/// | [`outlier_detection`](Self::outlier_detection) | an instance is ejected after 5 failures in a row, for 10 s, doubling to 5 min while it keeps failing |
/// | [`max_ejection_percent`](Self::max_ejection_percent) | 50 |
/// | [`active_health_check`](Self::active_health_check) | none |
pub struct ServiceProxyBuilder<
    C = ErrorsAsFailures,
    R = AnyFailure,
    P = CloneRequest,
    L = Identity,
    H = NoHealthCheck,
> {
    common: Common<C, R, P>,
    balance: Balance,
    checks: H,
    layer: L,
}

/// The settings of the layers above the balancer.
struct Common<C, R, P> {
    name: Arc<str>,
    timeout: Duration,
    attempt_timeout: Option<Duration>,
    retry: Result<RetryPolicy<ErrorsAsFailures, R, P>, ConfigError>,
    breaker: BreakerChoice,
    classifier: C,
}

#[derive(Debug, Clone)]
enum BreakerChoice {
    Default,
    Config(CircuitBreakerConfig),
    Breaker(CircuitBreaker),
    Off,
}

#[derive(Debug, Clone)]
struct Balance {
    strategy: LoadBalancerStrategy,
    outlier: Option<Option<CircuitBreakerConfig>>,
    max_ejection_percent: Option<u32>,
    panic_threshold: Option<u32>,
    wait_for_instance: Option<Duration>,
    seed: Option<u64>,
}

/// No active health check: the [`ServiceProxyBuilder`]'s default.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHealthCheck;

/// An active health check for the proxy's balancer, set by
/// [`ServiceProxyBuilder::active_health_check`].
#[derive(Debug, Clone)]
pub struct WithHealthCheck<H> {
    checker: H,
    config: ActiveHealthCheck,
}

/// The health check a [`ServiceProxyBuilder`] gives its balancer, for discovery
/// keys `K`: [`NoHealthCheck`] or [`WithHealthCheck`].
pub trait ProxyHealthCheck<K>: sealed::Sealed {
    /// Adds the check, if any, to `builder`.
    fn apply<D, Req, C>(
        self,
        builder: LoadBalancerBuilder<D, Req, C>,
    ) -> LoadBalancerBuilder<D, Req, C>
    where
        D: Discover<Key = K>;
}

impl<K> ProxyHealthCheck<K> for NoHealthCheck {
    fn apply<D, Req, C>(
        self,
        builder: LoadBalancerBuilder<D, Req, C>,
    ) -> LoadBalancerBuilder<D, Req, C>
    where
        D: Discover<Key = K>,
    {
        builder
    }
}

impl<K, H: HealthCheck<K>> ProxyHealthCheck<K> for WithHealthCheck<H> {
    fn apply<D, Req, C>(
        self,
        builder: LoadBalancerBuilder<D, Req, C>,
    ) -> LoadBalancerBuilder<D, Req, C>
    where
        D: Discover<Key = K>,
    {
        builder.active_health_check(self.checker, self.config)
    }
}

mod sealed {
    pub trait Sealed {}

    impl Sealed for super::NoHealthCheck {}
    impl<H> Sealed for super::WithHealthCheck<H> {}
}

// ===== construction =====

impl ServiceProxyBuilder {
    pub(super) fn new(name: Arc<str>) -> Self {
        let common = Common {
            retry: default_retry(&name),
            name,
            timeout: Duration::from_secs(10),
            attempt_timeout: None,
            breaker: BreakerChoice::Default,
            classifier: ErrorsAsFailures,
        };
        let balance = Balance {
            strategy: LoadBalancerStrategy::RoundRobin,
            outlier: None,
            max_ejection_percent: None,
            panic_threshold: None,
            wait_for_instance: None,
            seed: None,
        };
        ServiceProxyBuilder {
            common,
            balance,
            checks: NoHealthCheck,
            layer: Identity::new(),
        }
    }
}

/// The default policy, named after the proxy. Policy names live as long as the
/// program, as a policy's settings do.
fn default_retry(name: &str) -> Result<RetryPolicy, ConfigError> {
    let name: &'static str = Box::leak(name.to_owned().into_boxed_str());
    RetryPolicy::builder()
        .name(name)
        .budget(RetryBudget::default())
        .build()
}

fn default_breaker() -> Result<CircuitBreakerConfig, ConfigError> {
    CircuitBreakerConfig::builder()
        .sliding_window(SlidingWindow::count(100))
        .failure_rate_threshold(50.0)
        .minimum_calls(20)
        .open_duration(Duration::from_secs(5))
        .build()
}

fn default_outliers() -> Result<CircuitBreakerConfig, ConfigError> {
    CircuitBreakerConfig::builder()
        .failure_threshold(5)
        .open_duration(Duration::from_secs(10))
        .open_duration_growth(2.0, Duration::from_secs(300))
        .build()
}

// ===== settings =====

impl<C, R, P, L, H> ServiceProxyBuilder<C, R, P, L, H> {
    /// Bounds every call as a whole, retries and backoff delays included
    /// (default 10 s). A call that runs out fails with
    /// [`Elapsed`](tower::timeout::error::Elapsed).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.common.timeout = timeout;
        self
    }

    /// Bounds each attempt (default: the overall timeout). An attempt that runs
    /// out counts as a failure for the breakers and is retried, if time is left.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.common.attempt_timeout = Some(timeout);
        self
    }

    /// Retries by `policy`. Its classifier is replaced by the proxy's
    /// [`classifier`](Self::classifier), so the breakers and the retries agree on
    /// what a failure is; its predicate, replay hook, limits and budget are kept.
    ///
    /// For HTTP requests, which are not `Clone`, give the policy a replay hook
    /// (`tower_mesh::http::HttpReplay` through
    /// [`RetryPolicy::replay_with`]).
    pub fn retry<C2, R2, P2>(
        self,
        policy: RetryPolicy<C2, R2, P2>,
    ) -> ServiceProxyBuilder<C, R2, P2, L, H> {
        let common = Common {
            name: self.common.name,
            timeout: self.common.timeout,
            attempt_timeout: self.common.attempt_timeout,
            retry: Ok(policy.with_classifier(ErrorsAsFailures)),
            breaker: self.common.breaker,
            classifier: self.common.classifier,
        };
        ServiceProxyBuilder {
            common,
            balance: self.balance,
            checks: self.checks,
            layer: self.layer,
        }
    }

    /// Sends every call once, never retrying.
    pub fn without_retries(self) -> ServiceProxyBuilder<C, AnyFailure, CloneRequest, L, H> {
        self.retry(RetryPolicy::never())
    }

    /// Gives the service-wide breaker this configuration. The breaker is made at
    /// build time, named after the proxy, and kept for the rest of the program
    /// ([`CircuitBreaker::leak`]), so calls through it count no references.
    pub fn circuit_breaker(mut self, config: CircuitBreakerConfig) -> Self {
        self.common.breaker = BreakerChoice::Config(config);
        self
    }

    /// Uses `breaker`, made elsewhere, as the service-wide breaker: for example
    /// one shared with another client of the same service.
    pub fn shared_circuit_breaker(mut self, breaker: CircuitBreaker) -> Self {
        self.common.breaker = BreakerChoice::Breaker(breaker);
        self
    }

    /// Leaves the service-wide breaker out; the per-instance breakers of outlier
    /// detection still apply.
    pub fn without_circuit_breaker(mut self) -> Self {
        self.common.breaker = BreakerChoice::Off;
        self
    }

    /// Judges calls with `classifier`: it decides what the service-wide breaker,
    /// the retry policy and outlier detection count as failures (for HTTP,
    /// `tower_mesh::http::StatusClassifier`).
    pub fn classifier<C2>(self, classifier: C2) -> ServiceProxyBuilder<C2, R, P, L, H> {
        let common = Common {
            name: self.common.name,
            timeout: self.common.timeout,
            attempt_timeout: self.common.attempt_timeout,
            retry: self.common.retry,
            breaker: self.common.breaker,
            classifier,
        };
        ServiceProxyBuilder {
            common,
            balance: self.balance,
            checks: self.checks,
            layer: self.layer,
        }
    }

    /// Adds `layer` to every attempt, between the per-attempt timeout and the
    /// balancer. Layers added first are outermost, as with `ServiceBuilder`.
    pub fn layer<L2>(self, layer: L2) -> ServiceProxyBuilder<C, R, P, Stack<L2, L>, H> {
        ServiceProxyBuilder {
            common: self.common,
            balance: self.balance,
            checks: self.checks,
            layer: Stack::new(layer, self.layer),
        }
    }

    /// The balancer's strategy (default round robin).
    pub fn strategy(mut self, strategy: LoadBalancerStrategy) -> Self {
        self.balance.strategy = strategy;
        self
    }

    /// Gives every instance its own breaker with this configuration: an instance
    /// whose breaker opens is ejected until the breaker lets a probe through.
    pub fn outlier_detection(mut self, config: CircuitBreakerConfig) -> Self {
        self.balance.outlier = Some(Some(config));
        self
    }

    /// Turns outlier detection off: instances leave the rotation only through
    /// active checks or by hand.
    pub fn without_outlier_detection(mut self) -> Self {
        self.balance.outlier = Some(None);
        self
    }

    /// The most instances, in percent, that outlier detection ejects at once
    /// (default 50).
    pub fn max_ejection_percent(mut self, percent: u32) -> Self {
        self.balance.max_ejection_percent = Some(percent);
        self
    }

    /// Below this percentage of healthy instances, spread calls over all of them
    /// (default 0: never).
    pub fn panic_threshold(mut self, percent: u32) -> Self {
        self.balance.panic_threshold = Some(percent);
        self
    }

    /// With no instance able to take a call, wait up to this long for one before
    /// failing the call with
    /// [`NoHealthyInstanceError`](tower_mesh_balance::NoHealthyInstanceError)
    /// (default: fail at once).
    pub fn wait_for_instance(mut self, wait: Duration) -> Self {
        self.balance.wait_for_instance = Some(wait);
        self
    }

    /// Seeds the balancer's random strategies, for reproducible picks.
    pub fn seed(mut self, seed: u64) -> Self {
        self.balance.seed = Some(seed);
        self
    }

    /// Checks every instance with `checker` on the schedule of `config`;
    /// instances that fail leave the rotation until they pass again.
    pub fn active_health_check<H2>(
        self,
        checker: H2,
        config: ActiveHealthCheck,
    ) -> ServiceProxyBuilder<C, R, P, L, WithHealthCheck<H2>> {
        ServiceProxyBuilder {
            common: self.common,
            balance: self.balance,
            checks: WithHealthCheck { checker, config },
            layer: self.layer,
        }
    }
}

// ===== building =====

impl<C, R, P, L, H> ServiceProxyBuilder<C, R, P, L, H> {
    /// Builds the proxy over the instances of `discover`, a
    /// [`tower::discover::Discover`] stream: a
    /// [`ServiceRegistry::discover`](tower_mesh_balance::ServiceRegistry::discover)
    /// with an endpoint maker, a `tower_mesh::discover` source, or your own.
    ///
    /// The balancer is shared by every clone of the proxy through a
    /// [`SharedBalancer`]: no task of its own, so the proxy can be built outside a
    /// runtime (its calls run inside one).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the first setting out of range: `name` when it is
    /// empty, `timeout` or `attempt_timeout` when zero, `attempt_timeout` when
    /// longer than the overall timeout, the retry policy's and breakers' own
    /// settings, or the balancer's (`max_ejection_percent`, `panic_threshold`,
    /// `wait_for_instance`).
    #[allow(clippy::type_complexity)]
    pub fn build<D, Req>(
        self,
        discover: D,
    ) -> Result<ServiceProxy<Req, EndpointResponse<D, Req>>, ConfigError>
    where
        D: Discover + Send + 'static,
        D::Key: Hash + Clone + fmt::Debug + Send + Sync + 'static,
        D::Error: Into<BoxError>,
        D::Service: Service<Req> + Send + 'static,
        EndpointResponse<D, Req>: Send + 'static,
        EndpointError<D, Req>: Into<BoxError>,
        <D::Service as Service<Req>>::Future: Send + 'static,
        Req: Send + 'static,
        C: Classify<EndpointResponse<D, Req>, EndpointError<D, Req>>
            + Classify<EndpointResponse<D, Req>, BoxError>
            + Clone
            + Send
            + Sync
            + 'static,
        R: Retryable<EndpointResponse<D, Req>, BoxError> + Clone + Send + Sync + 'static,
        P: ReplayRequest<Req> + Clone + Send + Sync + 'static,
        H: ProxyHealthCheck<D::Key>,
        L: Layer<SharedBalancer<WatchedBalancer<D, Req, C>>>,
        L::Service:
            Service<Req, Response = EndpointResponse<D, Req>> + Clone + Send + Sync + 'static,
        <L::Service as Service<Req>>::Error: Into<BoxError>,
        <L::Service as Service<Req>>::Future: Send + 'static,
    {
        self.common.validate()?;
        let balancer = self
            .balance
            .builder(discover, self.common.classifier.clone())?;
        let balancer = self.checks.apply(balancer).build()?;
        let (watched, health) = WatchedBalancer::new(balancer);
        let shared = SharedBalancer::new(watched);
        self.common.finish(self.layer.layer(shared), Some(health))
    }
}

impl<C, R, P, L> ServiceProxyBuilder<C, R, P, L, NoHealthCheck> {
    /// Builds the proxy over one client, without a balancer: the timeouts, the
    /// retries, the breaker and your layers around `client`. The balancer's
    /// settings ([`strategy`](Self::strategy), outlier detection, ...) do not
    /// apply.
    ///
    /// `client` must be `Clone`, as every retry layer needs; wrap a client that
    /// is not in a [`SharedBalancer`] (when its `poll_ready` and `call` are quick)
    /// or in tower's `Buffer`.
    ///
    /// # Errors
    ///
    /// As for [`build`](Self::build), except the balancer's settings, which are
    /// not checked.
    pub fn build_client<S, Req>(
        self,
        client: S,
    ) -> Result<ServiceProxy<Req, S::Response>, ConfigError>
    where
        S: Service<Req>,
        L: Layer<S>,
        L::Service: Service<Req, Response = S::Response> + Clone + Send + Sync + 'static,
        <L::Service as Service<Req>>::Error: Into<BoxError>,
        <L::Service as Service<Req>>::Future: Send + 'static,
        S::Response: Send + 'static,
        Req: Send + 'static,
        C: Classify<S::Response, BoxError> + Clone + Send + Sync + 'static,
        R: Retryable<S::Response, BoxError> + Clone + Send + Sync + 'static,
        P: ReplayRequest<Req> + Clone + Send + Sync + 'static,
    {
        self.common.validate()?;
        self.common.finish(self.layer.layer(client), None)
    }
}

impl Balance {
    /// The balancer's builder with every setting given to the proxy.
    fn builder<D, Req, C>(
        &self,
        discover: D,
        classifier: C,
    ) -> Result<LoadBalancerBuilder<D, Req, C>, ConfigError>
    where
        D: Discover,
    {
        let mut builder = LoadBalancer::builder(discover)
            .strategy(self.strategy)
            .classifier(classifier);
        match self.outlier.clone() {
            None => builder = builder.outlier_detection(default_outliers()?),
            Some(Some(config)) => builder = builder.outlier_detection(config),
            Some(None) => {}
        }
        if let Some(percent) = self.max_ejection_percent {
            builder = builder.max_ejection_percent(percent);
        }
        if let Some(percent) = self.panic_threshold {
            builder = builder.panic_threshold(percent);
        }
        if let Some(wait) = self.wait_for_instance {
            builder = builder.wait_for_instance(wait);
        }
        if let Some(seed) = self.seed {
            builder = builder.seed(seed);
        }
        Ok(builder)
    }
}

impl<C, R, P> Common<C, R, P> {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::new("name", "must not be empty"));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::new("timeout", "must be greater than zero"));
        }
        match self.attempt_timeout {
            Some(attempt) if attempt.is_zero() => Err(ConfigError::new(
                "attempt_timeout",
                "must be greater than zero",
            )),
            Some(attempt) if attempt > self.timeout => Err(ConfigError::new(
                "attempt_timeout",
                format!(
                    "{attempt:?} is longer than the overall timeout {:?}",
                    self.timeout
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The service-wide breaker, if the proxy has one.
    fn breaker(&self) -> Result<Option<CircuitBreaker>, ConfigError> {
        let config = match &self.breaker {
            BreakerChoice::Off => return Ok(None),
            BreakerChoice::Breaker(breaker) => return Ok(Some(breaker.clone())),
            BreakerChoice::Default => default_breaker()?,
            BreakerChoice::Config(config) => config.clone(),
        };
        Ok(Some(CircuitBreaker::new(self.name.clone(), config).leak()))
    }

    /// Stacks the layers above `inner` (your layers over the balancer, or over
    /// the client) and boxes the whole.
    fn finish<S, Req>(
        self,
        inner: S,
        health: Option<super::BalancerHealth>,
    ) -> Result<ServiceProxy<Req, S::Response>, ConfigError>
    where
        S: Service<Req> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        S::Response: Send + 'static,
        Req: Send + 'static,
        C: Classify<S::Response, BoxError> + Clone + Send + Sync + 'static,
        R: Retryable<S::Response, BoxError> + Clone + Send + Sync + 'static,
        P: ReplayRequest<Req> + Clone + Send + Sync + 'static,
    {
        let breaker = self.breaker()?;
        // No backoff may end past the overall timeout, which arms its timer late
        // (see `call::CallTimeoutFuture`).
        let policy = self
            .retry?
            .with_classifier(self.classifier.clone())
            .cap_deadline(self.timeout);
        let budget = policy.budget().cloned();
        // Kept for the rest of the program, as the breaker is: about 1 KB a proxy.
        let counters: &'static Counters = Box::leak(Box::default());
        let breaker_layer = breaker
            .clone()
            .map(|breaker| CircuitBreakerLayer::new(breaker).with_classifier(self.classifier));
        let attempt_timeout = self.attempt_timeout.unwrap_or(self.timeout);

        let (attempt_timeout, deadlines) = AttemptTimeoutLayer::new(attempt_timeout);
        let attempts = ServiceBuilder::new()
            .layer(CountLayer::new(&counters.attempts))
            .option_layer(breaker_layer)
            .layer(attempt_timeout)
            .service(inner);
        let calls = Calls {
            retry: Retry::new(attempts, policy),
            timeout: self.timeout,
            requests: &counters.requests,
        };
        let send = move |request| calls.send(request);
        let parts = Parts {
            name: self.name,
            send: Box::new(send),
            breaker,
            budget,
            health,
            counters,
            _deadlines: deadlines,
        };
        Ok(ServiceProxy::from_parts(parts))
    }
}

impl<C, R, P, L, H> fmt::Debug for ServiceProxyBuilder<C, R, P, L, H>
where
    C: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceProxyBuilder")
            .field("name", &self.common.name)
            .field("timeout", &self.common.timeout)
            .field("attempt_timeout", &self.common.attempt_timeout)
            .field("breaker", &self.common.breaker)
            .field("classifier", &self.common.classifier)
            .field("balance", &self.balance)
            .finish_non_exhaustive()
    }
}
