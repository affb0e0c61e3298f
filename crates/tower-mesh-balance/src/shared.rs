//! [`SharedBalancer`]: one balancer used by every clone of a client, under a lock
//! held only to pick an endpoint.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll, Wake, Waker};

use pin_project_lite::pin_project;
use tokio::sync::futures::OwnedNotified;
use tokio::sync::Notify;
use tower_mesh_core::BoxError;
use tower_service::Service;

use crate::error::BalancerPanickedError;

/// A [`LoadBalancer`](crate::LoadBalancer) (or any service whose `poll_ready`
/// and `call` return quickly) shared by every clone, without a task of its own.
///
/// A balancer is one stateful service and is not `Clone`. tower's `Buffer`
/// shares such a service by giving it a task and sending it every request
/// through a channel: a hop, a task wake-up and an allocation per call.
/// `SharedBalancer` takes a lock instead, on the caller's own task, for as long
/// as the balancer needs to become ready and start the call. The response is
/// awaited outside the lock, so calls in flight never hold it.
///
/// - **Clone** is a reference count; clones share one balancer.
/// - **`poll_ready`** is always ready. Readiness is awaited by the call's
///   future: while the balancer is `Pending` (every endpoint busy, or waiting for
///   an instance to appear), the future waits for the balancer's wake-up, then
///   tries again. Nothing bounds how many calls wait; each waiting call holds
///   only its own request.
/// - **Errors**: the balancer's own errors, and [`BalancerPanickedError`] for
///   every call after a call panicked while holding the lock (the balancer's
///   state can no longer be trusted).
///
/// # Example
///
/// ```
/// use tower::{service_fn, ServiceExt};
/// use tower_mesh_balance::{
///     LoadBalancer, LoadBalancerStrategy, ServiceInstance, ServiceRegistry, SharedBalancer,
/// };
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), tower_mesh_core::BoxError> {
/// let registry = ServiceRegistry::new(LoadBalancerStrategy::RoundRobin);
/// registry.register(ServiceInstance::new("a", "10.0.0.1", 80))?;
/// let discover = registry.discover(|_: &ServiceInstance| {
///     service_fn(|n: u32| async move { Ok::<_, std::io::Error>(n + 1) })
/// });
/// let shared = SharedBalancer::new(LoadBalancer::builder(discover).build()?);
///
/// let calls: Vec<_> = (0..4).map(|n| shared.clone().oneshot(n)).collect();
/// for (n, call) in calls.into_iter().enumerate() {
///     assert_eq!(call.await?, n as u32 + 1);
/// }
/// # Ok(())
/// # }
/// ```
pub struct SharedBalancer<S> {
    shared: Arc<Shared<S>>,
}

struct Shared<S> {
    service: Mutex<S>,
    /// Wakes the calls waiting for the service to become ready.
    ready: Arc<Notify>,
    /// The waker the service is always polled with: it notifies `ready`. One
    /// waker for every caller, so the service's own wakers (discovery, timers,
    /// endpoints) never need to be replaced.
    waker: Waker,
}

/// Wakes every call waiting on the notify.
struct WakeWaiters(Arc<Notify>);

impl Wake for WakeWaiters {
    fn wake(self: Arc<Self>) {
        self.0.notify_waiters();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.notify_waiters();
    }
}

/// What one try at the locked service gave.
enum Attempt<F, Req> {
    Called(F),
    Failed(BoxError),
    NotReady(Req),
}

impl<S> SharedBalancer<S> {
    /// Shares `service` between every clone of the returned handle.
    pub fn new(service: S) -> Self {
        let ready = Arc::new(Notify::new());
        let waker = Waker::from(Arc::new(WakeWaiters(ready.clone())));
        let shared = Shared {
            service: Mutex::new(service),
            ready,
            waker,
        };
        SharedBalancer {
            shared: Arc::new(shared),
        }
    }

    /// Runs `f` on the shared service, under the lock; `None` after a panic
    /// poisoned it. Keep `f` short: every call waits for the lock.
    pub fn with<T>(&self, f: impl FnOnce(&mut S) -> T) -> Option<T> {
        let mut service = self.shared.service.lock().ok()?;
        Some(f(&mut service))
    }
}

impl<S> Shared<S> {
    /// Locks the service, and starts the call if it is ready.
    fn try_call<Req>(&self, request: Req) -> Attempt<S::Future, Req>
    where
        S: Service<Req>,
        S::Error: Into<BoxError>,
    {
        let Ok(mut service) = self.service.lock() else {
            return Attempt::Failed(BalancerPanickedError.into());
        };
        let mut cx = Context::from_waker(&self.waker);
        match service.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => Attempt::Called(service.call(request)),
            Poll::Ready(Err(error)) => Attempt::Failed(error.into()),
            Poll::Pending => Attempt::NotReady(request),
        }
    }
}

impl<S> Clone for SharedBalancer<S> {
    fn clone(&self) -> Self {
        SharedBalancer {
            shared: self.shared.clone(),
        }
    }
}

impl<S, Req> Service<Req> for SharedBalancer<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = SharedFuture<S, Req>;

    /// Always ready: the call's future waits for the balancer.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    /// Starts the call at once when the balancer is ready, which is the common
    /// case; otherwise the future waits for it.
    fn call(&mut self, request: Req) -> Self::Future {
        let state = match self.shared.try_call(request) {
            Attempt::Called(future) => State::Called { future },
            Attempt::Failed(error) => State::Failed { error: Some(error) },
            Attempt::NotReady(request) => State::Waiting {
                waiting: Box::pin(Waiting {
                    shared: self.shared.clone(),
                    request: Some(request),
                    notified: None,
                }),
            },
        };
        SharedFuture { state }
    }
}

pin_project! {
    /// The response future of [`SharedBalancer`].
    ///
    /// # Cancel safety
    ///
    /// Dropping it while it waits for the balancer sends nothing; dropping it once
    /// the call started drops the balancer's own future.
    pub struct SharedFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req>,
    }
}

pin_project! {
    #[project = StateProjection]
    enum State<S, Req>
    where
        S: Service<Req>,
    {
        Called {
            #[pin]
            future: S::Future,
        },
        // Boxed: a call rarely waits, and a waiting one holds its request.
        Waiting {
            waiting: Pin<Box<Waiting<S, Req>>>,
        },
        Failed {
            error: Option<BoxError>,
        },
    }
}

pin_project! {
    /// A call waiting for the balancer to become ready.
    struct Waiting<S, Req> {
        shared: Arc<Shared<S>>,
        request: Option<Req>,
        #[pin]
        notified: Option<OwnedNotified>,
    }
}

impl<S, Req> Future for SharedFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            let future = match state.as_mut().project() {
                StateProjection::Called { future } => {
                    return future.poll(cx).map_err(Into::into);
                }
                StateProjection::Failed { error } => {
                    let error = error.take().unwrap_or_else(|| BalancerPanickedError.into());
                    return Poll::Ready(Err(error));
                }
                StateProjection::Waiting { waiting } => {
                    let waiting = waiting.as_mut().project();
                    ready!(poll_waiting(
                        waiting.shared,
                        waiting.request,
                        waiting.notified,
                        cx
                    ))
                }
            };
            state.set(match future {
                Ok(future) => State::Called { future },
                Err(error) => State::Failed { error: Some(error) },
            });
        }
    }
}

/// Waits for the balancer's wake-up, then tries it again; `Ready` with the
/// started call, or with the error that ends it.
///
/// One try per poll: a balancer that wakes its waker before returning `Pending`
/// (as tokio's cooperative budget makes channels do) must not be polled in a loop.
fn poll_waiting<S, Req>(
    shared: &Arc<Shared<S>>,
    request: &mut Option<Req>,
    mut notified: Pin<&mut Option<OwnedNotified>>,
    cx: &mut Context<'_>,
) -> Poll<Result<S::Future, BoxError>>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    if let Some(waiting) = notified.as_mut().as_pin_mut() {
        ready!(waiting.poll(cx));
    }
    // Listen before trying, so that a wake-up while the lock is held, or just
    // after, is not lost.
    notified.set(Some(shared.ready.clone().notified_owned()));
    let Some(mut listening) = notified.as_mut().as_pin_mut() else {
        return Poll::Pending;
    };
    listening.as_mut().enable();
    let Some(taken) = request.take() else {
        return Poll::Ready(Err(BalancerPanickedError.into()));
    };
    match shared.try_call(taken) {
        Attempt::Called(future) => Poll::Ready(Ok(future)),
        Attempt::Failed(error) => Poll::Ready(Err(error)),
        Attempt::NotReady(taken) => {
            *request = Some(taken);
            if listening.poll(cx).is_ready() {
                // Woken while trying: try again on the next poll.
                notified.set(None);
                cx.waker().wake_by_ref();
            }
            Poll::Pending
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for SharedBalancer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("SharedBalancer");
        match self.shared.service.try_lock() {
            Ok(service) => debug.field("service", &*service),
            Err(_) => debug.field("service", &"<locked>"),
        };
        debug.finish()
    }
}

impl<S, Req> fmt::Debug for SharedFuture<S, Req>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Called { .. } => "called",
            State::Waiting { .. } => "waiting for the balancer",
            State::Failed { .. } => "failed",
        };
        f.debug_struct("SharedFuture")
            .field("state", &state)
            .finish()
    }
}
