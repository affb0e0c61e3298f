//! Health news from outside the balancer: manual marks, breaker state changes and
//! active checks, queued until the balancer's next `poll_ready`.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

/// Which endpoint a signal is about.
#[derive(Debug, Clone)]
pub(crate) enum Target<K> {
    /// Whatever endpoint has this key now.
    Key(K),
    /// Only the endpoint inserted with this serial, if it is still there.
    Serial(u64),
}

/// Who sent a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Manual,
    Breaker,
    Check,
}

#[derive(Debug, Clone)]
pub(crate) struct Signal<K> {
    pub(crate) target: Target<K>,
    pub(crate) source: Source,
    pub(crate) healthy: bool,
}

/// The queue, shared by the balancer and everything that reports health.
pub(crate) struct Signals<K> {
    queued: AtomicBool,
    inner: Mutex<Inner<K>>,
}

struct Inner<K> {
    signals: Vec<Signal<K>>,
    waker: Option<Waker>,
}

impl<K> Signals<K> {
    pub(crate) fn new() -> Self {
        Signals {
            queued: AtomicBool::new(false),
            inner: Mutex::new(Inner {
                signals: Vec::new(),
                waker: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<K>> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn send(&self, signal: Signal<K>) {
        let mut inner = self.lock();
        inner.signals.push(signal);
        self.queued.store(true, Ordering::Release);
        if let Some(waker) = inner.waker.take() {
            waker.wake();
        }
    }

    /// Takes every queued signal; one atomic load when there is none.
    pub(crate) fn take(&self) -> Vec<Signal<K>> {
        // A plain load first: the common case (nothing queued) writes nothing.
        if !self.queued.load(Ordering::Acquire) || !self.queued.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        std::mem::take(&mut self.lock().signals)
    }

    /// Wakes `waker` on the next signal.
    pub(crate) fn register(&self, waker: &Waker) {
        let mut inner = self.lock();
        match &inner.waker {
            Some(current) if current.will_wake(waker) => {}
            _ => inner.waker = Some(waker.clone()),
        }
    }
}

impl<K> fmt::Debug for Signals<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signals")
            .field("queued", &self.queued.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

// ===== HealthControl =====

/// Marks a [`LoadBalancer`](crate::LoadBalancer)'s endpoints healthy or unhealthy
/// by hand, from anywhere; see
/// [`LoadBalancer::health_control`](crate::LoadBalancer::health_control).
///
/// A mark takes effect at the balancer's next `poll_ready`. An endpoint marked
/// unhealthy keeps its place in the rotation and takes no calls, not even under the
/// panic threshold, until it is marked healthy again; calls already sent to it
/// finish normally. Marks belong to keys, not to endpoints: a key marked unhealthy
/// stays so when discovery removes and re-inserts it, or inserts it only later.
///
/// # Clone
///
/// Clones control the same balancer.
pub struct HealthControl<K> {
    pub(crate) signals: Arc<Signals<K>>,
}

impl<K> HealthControl<K> {
    /// Marks the endpoint with this key healthy or unhealthy.
    pub fn mark_healthy(&self, key: K, healthy: bool) {
        self.signals.send(Signal {
            target: Target::Key(key),
            source: Source::Manual,
            healthy,
        });
    }
}

impl<K> Clone for HealthControl<K> {
    fn clone(&self) -> Self {
        HealthControl {
            signals: self.signals.clone(),
        }
    }
}

impl<K> fmt::Debug for HealthControl<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthControl").finish_non_exhaustive()
    }
}
