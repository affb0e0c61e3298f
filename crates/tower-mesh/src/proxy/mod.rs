//! [`ServiceProxy`]: timeout, retries, a circuit breaker and a load balancer,
//! composed into one tower stack.

mod builder;
mod call;
mod count;
mod deadline;
mod health;

pub use builder::{NoHealthCheck, ProxyHealthCheck, ServiceProxyBuilder, WithHealthCheck};
pub use health::{BalancerHealth, EndpointHealth, HealthChange, HealthEvent, WatchedBalancer};

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::util::BoxCloneSyncService;
use tower_mesh_breaker::CircuitBreaker;
use tower_mesh_core::BoxError;
use tower_mesh_retry::RetryBudget;
use tower_service::Service;

use deadline::DeadlinesOwner;

/// A named client for one service: an overall timeout, retries with a budget, a
/// service-wide circuit breaker, a per-attempt timeout and a load balancer with
/// outlier detection and active health checks, as one tower service.
///
/// Build one with [`ServiceProxy::builder`]; the sections below give the order
/// of the layers and why, and the same stack built by hand.
///
/// # The layers, outermost first
///
/// ```text
/// ServiceProxy::call
///  1. Timeout (overall)       bounds the whole call, retries and backoff included
///  2. Retry (policy, budget)  resends failed attempts; the budget caps extra load
///  3. CircuitBreaker          one breaker for the whole service
///  4. Timeout (per attempt)   bounds one attempt, so a hung instance is retried
///  5. your layer              runs once per attempt
///  6. SharedBalancer          shares the one balancer between every clone
///  7. LoadBalancer            picks an instance; each has its own breaker
///     └ endpoints             made by your endpoint maker from discovery
/// ```
///
/// Why this order:
///
/// - **The overall timeout is outermost**, so it bounds what the caller waits
///   for: every attempt and every backoff delay. A retry cannot outlive it: the
///   retry policy's deadline is capped at it, so no retry starts that would end
///   past it. Its timer is armed only for calls that outlive their first poll's
///   attempt, which the per-attempt timeout already bounds; a call answered on
///   its first attempt registers one timer, not two.
/// - **Retry is outside the breaker.** An open breaker fails an attempt with
///   [`CircuitOpenError`](tower_mesh_breaker::CircuitOpenError), which the retry
///   policy never retries: when the service as a whole is down, calls fail at
///   once instead of spending the budget on rejections.
/// - **The breaker counts attempts, not calls**, and sees attempt timeouts as
///   failures: a service that hangs opens it like one that refuses.
/// - **The per-attempt timeout is inside retry**, so one slow attempt is cut
///   short and retried, on another instance, within the overall timeout.
/// - **[`SharedBalancer`](tower_mesh_balance::SharedBalancer) sits in front of
///   the balancer**, because the balancer is one stateful service (it is not
///   `Clone`): every clone of the proxy takes a short lock to pick an endpoint,
///   on its own task, and awaits the response outside the lock. No task, channel
///   or allocation stands between a call and its endpoint.
/// - **Per-instance breakers live inside the balancer** (outlier detection): one
///   failing instance is ejected while the good ones keep their traffic, which a
///   single service-wide breaker could not do. The service-wide breaker only
///   opens when failures persist across instances.
///
/// # Building the same stack by hand
///
/// The proxy is only tower. This is the stack it builds, written out with
/// `ServiceBuilder` and [`ServiceBuilderExt`](crate::ServiceBuilderExt); take
/// layers out, reorder them or add your own:
///
/// ```
/// use std::time::Duration;
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
/// use tower_mesh::prelude::*;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), BoxError> {
/// let registry = ServiceRegistry::new(LoadBalancerStrategy::RoundRobin);
/// registry.register(ServiceInstance::new("a", "10.0.0.1", 80))?;
/// let discover = registry.discover(|_: &ServiceInstance| {
///     service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n * 2) })
/// });
///
/// // 7: the balancer, a breaker per instance.
/// let balancer = LoadBalancer::builder(discover)
///     .outlier_detection(CircuitBreakerConfig::builder().failure_threshold(5).build()?)
///     .build()?;
/// // 6: shared by every clone.
/// let balancer = SharedBalancer::new(balancer);
/// // 1 to 4 around it.
/// let breaker = CircuitBreaker::new("inventory", CircuitBreakerConfig::default()).leak();
/// let policy = RetryPolicy::builder().max_retries(2).budget(RetryBudget::default()).build()?;
/// let service = ServiceBuilder::new()
///     .timeout(Duration::from_secs(5))
///     .retry_policy(policy)
///     .circuit_breaker(breaker)
///     .timeout(Duration::from_secs(1))
///     .service(balancer);
///
/// assert_eq!(service.oneshot(21).await?, 42);
/// # Ok(())
/// # }
/// ```
///
/// # Clone
///
/// Clones are cheap (one reference count) and share everything: the breaker, the
/// retry budget, the balancer and the counts. [`call`](ServiceProxy::call) takes
/// `&self`, so one proxy can also be shared by reference.
///
/// # Memory
///
/// A proxy keeps about 2 KB for the rest of the program, so that calls count no
/// references to them: its service-wide breaker when the builder makes it (see
/// [`CircuitBreaker::leak`]), its call counters, and the head of its attempt
/// timeout queue. Everything else, the balancer and its connections included,
/// is freed when the last clone is dropped and the last call ends.
///
/// # Errors
///
/// Calls fail with a [`BoxError`]. The errors a caller may want to tell apart,
/// with `downcast_ref`:
///
/// - [`tower::timeout::error::Elapsed`]: the overall timeout (or the last
///   attempt's timeout) passed;
/// - [`CircuitOpenError`](tower_mesh_breaker::CircuitOpenError): the service-wide
///   breaker is open;
/// - [`NoHealthyInstanceError`](tower_mesh_balance::NoHealthyInstanceError): no
///   instance could take the call;
/// - otherwise the last attempt's own error, from the endpoint.
///
/// A failed response that is not an error (an HTTP `503` that the classifier
/// counts as a failure) is returned as `Ok` once no retry is left.
pub struct ServiceProxy<Req, Res> {
    parts: Arc<Parts<Req, Res>>,
}

/// The future of one call through a [`ServiceProxy`].
pub type ProxyFuture<Res> = Pin<Box<dyn Future<Output = Result<Res, BoxError>> + Send + 'static>>;

/// Sends one request through a clone of the stack.
pub(crate) type SendFn<Req, Res> = Box<dyn Fn(Req) -> ProxyFuture<Res> + Send + Sync>;

/// Everything a proxy and its clones share.
pub(crate) struct Parts<Req, Res> {
    pub(crate) name: Arc<str>,
    pub(crate) send: SendFn<Req, Res>,
    pub(crate) breaker: Option<CircuitBreaker>,
    pub(crate) budget: Option<RetryBudget>,
    pub(crate) health: Option<BalancerHealth>,
    pub(crate) counters: &'static Counters,
    /// Ends the per-attempt timeout's watcher with the last clone.
    pub(crate) _deadlines: DeadlinesOwner,
}

/// The calls and attempts counted by a proxy's layers.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) requests: count::Striped,
    pub(crate) attempts: count::Striped,
}

/// What a [`ServiceProxy`] has sent so far; see [`ServiceProxy::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxyStats {
    /// Calls made through the proxy.
    pub requests: u64,
    /// Attempts that reached the service-wide breaker: first attempts and retries.
    pub attempts: u64,
    /// Retries sent: attempts beyond the first of each call.
    pub retries: u64,
}

impl ServiceProxy<(), ()> {
    /// Starts building a proxy for the service called `name`, which names its
    /// breaker and its retry policy in errors, logs and metrics.
    pub fn builder(name: impl Into<Arc<str>>) -> ServiceProxyBuilder {
        ServiceProxyBuilder::new(name.into())
    }
}

impl<Req, Res> ServiceProxy<Req, Res> {
    /// The proxy over `parts`, made by the builder.
    pub(crate) fn from_parts(parts: Parts<Req, Res>) -> Self {
        ServiceProxy {
            parts: Arc::new(parts),
        }
    }

    /// The name given to [`builder`](ServiceProxy::builder).
    pub fn name(&self) -> &str {
        &self.parts.name
    }

    /// Sends `request` through the whole stack and waits for its response.
    ///
    /// Each call uses a clone of the stack, so any number of calls can be in
    /// flight from one proxy; the returned future does not borrow it, and its one
    /// allocation holds the whole call.
    ///
    /// # Errors
    ///
    /// See [the type's docs](ServiceProxy#errors).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future cancels the attempt in flight or the backoff delay; no
    /// further attempt is sent, and the breakers record nothing for the dropped
    /// attempt.
    pub fn call(&self, request: Req) -> ProxyFuture<Res> {
        (self.parts.send)(request)
    }

    /// The service-wide breaker, to read its state or add
    /// [`on_state_change`](CircuitBreaker::on_state_change) listeners; `None` when
    /// the proxy was built without one.
    pub fn breaker(&self) -> Option<&CircuitBreaker> {
        self.parts.breaker.as_ref()
    }

    /// The retry policy's budget, when it has one.
    pub fn retry_budget(&self) -> Option<&RetryBudget> {
        self.parts.budget.as_ref()
    }

    /// The balancer's endpoints and their health changes; `None` for a proxy over
    /// a single client.
    pub fn health(&self) -> Option<&BalancerHealth> {
        self.parts.health.as_ref()
    }

    /// The calls, attempts and retries sent so far.
    pub fn stats(&self) -> ProxyStats {
        let requests = self.parts.counters.requests.sum();
        let attempts = self.parts.counters.attempts.sum();
        ProxyStats {
            requests,
            attempts,
            retries: attempts.saturating_sub(requests),
        }
    }

    /// The proxy as a boxed tower service, for code that names one service type
    /// for any stack. The proxy itself is a `Service` too.
    pub fn into_service(self) -> BoxCloneSyncService<Req, Res, BoxError>
    where
        Req: 'static,
        Res: 'static,
    {
        BoxCloneSyncService::new(self)
    }
}

impl<Req, Res> Clone for ServiceProxy<Req, Res> {
    fn clone(&self) -> Self {
        ServiceProxy {
            parts: self.parts.clone(),
        }
    }
}

impl<Req, Res> Service<Req> for ServiceProxy<Req, Res> {
    type Response = Res;
    type Error = BoxError;
    type Future = ProxyFuture<Res>;

    /// Always ready: each call's future waits for the stack's readiness (your
    /// layers', and the balancer's while every endpoint is busy).
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        ServiceProxy::call(self, request)
    }
}

impl<Req, Res> fmt::Debug for ServiceProxy<Req, Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceProxy")
            .field("name", &self.parts.name)
            .field("breaker", &self.parts.breaker)
            .field("budget", &self.parts.budget)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
