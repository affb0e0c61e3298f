//! [`ServiceRegistry`]: the in-process instance registry, usable on its own or as a
//! discovery source for a [`LoadBalancer`](crate::LoadBalancer).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::fmt;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll, Waker};

use futures_util::Stream;
use tower::discover::Change;
use tower_mesh_core::ConfigError;

use crate::instance::{InstanceKey, ServiceInstance};
use crate::rand::{random_seed, stable_hash};
use crate::strategy::{EndpointView, Picker};
use crate::{LoadBalancerStrategy, NoHealthyInstanceError};

/// A registry of service instances with health flags and a selection strategy.
///
/// It works without tower: [`register`](Self::register),
/// [`deregister`](Self::deregister), [`mark_healthy`](Self::mark_healthy) and
/// [`get_instance`](Self::get_instance) are the whole of it. It is also a
/// discovery source: [`discover`](Self::discover) returns a
/// [`tower::discover::Discover`] stream, so a [`LoadBalancer`](crate::LoadBalancer)
/// built on it follows every registration, removal and health change at run time.
///
/// Clones share one registry. Every method takes a short lock; none waits on I/O.
///
/// # Example
///
/// ```
/// use tower_mesh_balance::{LoadBalancerStrategy, ServiceInstance, ServiceRegistry};
///
/// let registry = ServiceRegistry::new(LoadBalancerStrategy::RoundRobin);
/// registry.register(ServiceInstance::new("a", "10.0.0.1", 80))?;
/// registry.register(ServiceInstance::new("b", "10.0.0.2", 80))?;
///
/// assert_eq!(registry.get_instance()?.id, "a");
/// assert_eq!(registry.get_instance()?.id, "b");
///
/// registry.mark_healthy("a", false);
/// assert_eq!(registry.get_instance()?.id, "b");
///
/// registry.deregister("b");
/// assert!(registry.get_instance().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Load-aware strategies
///
/// The registry alone sees no calls, so under
/// [`LeastConnections`](LoadBalancerStrategy::LeastConnections) every instance has
/// no call in flight and picks go in turn, and under
/// [`PeakEwma`](LoadBalancerStrategy::PeakEwma) every latency is the same and picks
/// are random. A [`LoadBalancer`](crate::LoadBalancer) over
/// [`discover`](Self::discover) measures both.
#[derive(Clone)]
pub struct ServiceRegistry {
    shared: Arc<Mutex<Registry>>,
}

struct Registry {
    /// In no particular order (a removal moves the last entry into the gap);
    /// `registered` gives the registration order.
    entries: Vec<Entry>,
    index: HashMap<String, usize>,
    registrations: u64,
    picker: Picker,
    subscribers: Vec<Weak<Subscriber>>,
}

struct Entry {
    key: InstanceKey,
    healthy: bool,
    hash: u64,
    /// When the instance was first registered, counted in registrations.
    registered: u64,
}

impl ServiceRegistry {
    /// An empty registry choosing instances by `strategy`, seeded at random.
    pub fn new(strategy: LoadBalancerStrategy) -> Self {
        Self::with_seed(strategy, random_seed())
    }

    /// An empty registry whose random choices follow `seed`, for reproducible picks.
    pub fn with_seed(strategy: LoadBalancerStrategy, seed: u64) -> Self {
        let registry = Registry {
            entries: Vec::new(),
            index: HashMap::new(),
            registrations: 0,
            picker: Picker::new(strategy, seed),
            subscribers: Vec::new(),
        };
        ServiceRegistry {
            shared: Arc::new(Mutex::new(registry)),
        }
    }

    /// Adds `instance`, healthy. An instance with the same id is replaced in place.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field when the id or host is empty or the
    /// weight is zero; the registry is left unchanged.
    pub fn register(&self, instance: ServiceInstance) -> Result<(), ConfigError> {
        instance.validate()?;
        let key = InstanceKey::new(Arc::new(instance));
        tracing::debug!(instance = %key, address = %key.instance().address(), "instance registered");
        self.lock().register(key);
        Ok(())
    }

    /// Removes the instance with this id, and returns it if it was registered.
    pub fn deregister(&self, id: &str) -> Option<ServiceInstance> {
        let removed = self.lock().deregister(id)?;
        tracing::debug!(instance = %id, "instance deregistered");
        Some(removed.instance().clone())
    }

    /// Marks the instance healthy or unhealthy, and returns `false` if no instance
    /// has this id.
    ///
    /// An unhealthy instance is never picked by [`get_instance`](Self::get_instance),
    /// and is withdrawn from the discovery streams until it is marked healthy again.
    pub fn mark_healthy(&self, id: &str, healthy: bool) -> bool {
        let found = self.lock().mark_healthy(id, healthy);
        if found {
            tracing::debug!(instance = %id, healthy, "instance health set");
        }
        found
    }

    /// Picks a healthy instance by the registry's strategy.
    ///
    /// Under [`ConsistentHash`](LoadBalancerStrategy::ConsistentHash), which needs a
    /// key, this picks in turn; use [`get_instance_for`](Self::get_instance_for).
    ///
    /// # Errors
    ///
    /// [`NoHealthyInstanceError`] when no registered instance is healthy.
    pub fn get_instance(&self) -> Result<Arc<ServiceInstance>, NoHealthyInstanceError> {
        self.lock().pick(None)
    }

    /// Picks a healthy instance for `key`: under
    /// [`ConsistentHash`](LoadBalancerStrategy::ConsistentHash) the same key gets
    /// the same instance while it stays healthy; other strategies ignore the key.
    ///
    /// # Errors
    ///
    /// [`NoHealthyInstanceError`] when no registered instance is healthy.
    pub fn get_instance_for<T: Hash + ?Sized>(
        &self,
        key: &T,
    ) -> Result<Arc<ServiceInstance>, NoHealthyInstanceError> {
        self.lock().pick(Some(stable_hash(key)))
    }

    /// Every registered instance with its health flag, in registration order.
    pub fn instances(&self) -> Vec<(ServiceInstance, bool)> {
        let registry = self.lock();
        let mut entries: Vec<&Entry> = registry.entries.iter().collect();
        entries.sort_unstable_by_key(|entry| entry.registered);
        entries
            .into_iter()
            .map(|entry| (entry.key.instance().clone(), entry.healthy))
            .collect()
    }

    /// A discovery stream of the healthy instances, for a
    /// [`LoadBalancer`](crate::LoadBalancer).
    ///
    /// It starts with an insert for every instance healthy now, then follows the
    /// registry: registering or marking an instance healthy inserts it, and
    /// deregistering or marking it unhealthy removes it. `make_endpoint` turns each
    /// inserted instance into the service that calls it. The stream never fails; it
    /// ends when every handle to the registry is dropped.
    pub fn discover<M: MakeEndpoint>(&self, make_endpoint: M) -> RegistryDiscover<M> {
        let subscriber = Arc::new(Subscriber::default());
        let mut registry = self.lock();
        for entry in registry.entries.iter().filter(|entry| entry.healthy) {
            subscriber.push(Event::Insert(entry.key.clone()));
        }
        registry.subscribers.push(Arc::downgrade(&subscriber));
        drop(registry);
        RegistryDiscover {
            subscriber,
            registry: Arc::downgrade(&self.shared),
            make_endpoint,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic while the lock was held cannot leave the registry half-changed
        // (each method mutates after validating), so a poisoned lock is usable.
        self.shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl fmt::Debug for ServiceRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let registry = self.lock();
        f.debug_struct("ServiceRegistry")
            .field("strategy", &registry.picker.strategy())
            .field("instances", &registry.entries.len())
            .finish_non_exhaustive()
    }
}

// ===== impl Registry =====

impl Registry {
    fn register(&mut self, key: InstanceKey) {
        let mut entry = Entry {
            hash: stable_hash(key.id()),
            key: key.clone(),
            healthy: true,
            registered: self.registrations,
        };
        match self.index.get(key.id()) {
            Some(&position) => {
                entry.registered = self.entries[position].registered;
                let old = std::mem::replace(&mut self.entries[position], entry);
                if old.healthy {
                    self.announce(Event::Remove(old.key));
                }
            }
            None => {
                self.registrations += 1;
                self.index.insert(key.id().to_owned(), self.entries.len());
                self.entries.push(entry);
            }
        }
        self.picker.membership_changed();
        self.announce(Event::Insert(key));
    }

    /// Removes the instance in O(1): the last entry moves into its place.
    fn deregister(&mut self, id: &str) -> Option<InstanceKey> {
        let position = self.index.remove(id)?;
        let entry = self.entries.swap_remove(position);
        if let Some(moved) = self.entries.get(position) {
            if let Some(slot) = self.index.get_mut(moved.key.id()) {
                *slot = position;
            }
        }
        self.picker.membership_changed();
        if entry.healthy {
            self.announce(Event::Remove(entry.key.clone()));
        }
        Some(entry.key)
    }

    fn mark_healthy(&mut self, id: &str, healthy: bool) -> bool {
        let Some(&position) = self.index.get(id) else {
            return false;
        };
        let entry = &mut self.entries[position];
        if entry.healthy == healthy {
            return true;
        }
        entry.healthy = healthy;
        let key = entry.key.clone();
        self.announce(if healthy {
            Event::Insert(key)
        } else {
            Event::Remove(key)
        });
        true
    }

    fn pick(&mut self, key: Option<u64>) -> Result<Arc<ServiceInstance>, NoHealthyInstanceError> {
        let view = RegistryView(&self.entries);
        match self.picker.pick(&view, key) {
            Some(index) => Ok(self.entries[index].key.shared()),
            None => Err(NoHealthyInstanceError::new(
                self.entries.len(),
                Default::default(),
            )),
        }
    }

    /// Queues `event` for every live discovery stream, and forgets dropped ones.
    fn announce(&mut self, event: Event) {
        self.subscribers
            .retain(|subscriber| match subscriber.upgrade() {
                Some(subscriber) => {
                    subscriber.push(event.clone());
                    true
                }
                None => false,
            });
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // Wake the streams so they see the registry is gone and end.
        for subscriber in self.subscribers.iter().filter_map(Weak::upgrade) {
            subscriber.wake();
        }
    }
}

struct RegistryView<'a>(&'a [Entry]);

impl EndpointView for RegistryView<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_available(&self, index: usize) -> bool {
        self.0[index].healthy
    }

    fn weight(&self, index: usize) -> u32 {
        self.0[index].key.weight()
    }

    fn in_flight(&self, _index: usize) -> u64 {
        0
    }

    fn load_cost(&self, _index: usize) -> f64 {
        0.0
    }

    fn key_hash(&self, index: usize) -> u64 {
        self.0[index].hash
    }
}

// ===== MakeEndpoint =====

/// Turns a discovered [`ServiceInstance`] into the service that calls it.
///
/// Implemented for every `FnMut(&ServiceInstance) -> S`, so a closure that builds a
/// client for `instance.address()` is enough.
pub trait MakeEndpoint {
    /// The endpoint service.
    type Service;

    /// Builds the endpoint for `instance`. It should not block: connect lazily.
    fn make_endpoint(&mut self, instance: &ServiceInstance) -> Self::Service;
}

impl<F, S> MakeEndpoint for F
where
    F: FnMut(&ServiceInstance) -> S,
{
    type Service = S;

    fn make_endpoint(&mut self, instance: &ServiceInstance) -> S {
        self(instance)
    }
}

// ===== RegistryDiscover =====

/// The discovery stream of a [`ServiceRegistry`]; see [`ServiceRegistry::discover`].
///
/// Yields `Change<InstanceKey, M::Service>` and never an error.
pub struct RegistryDiscover<M> {
    subscriber: Arc<Subscriber>,
    registry: Weak<Mutex<Registry>>,
    make_endpoint: M,
}

#[derive(Clone)]
enum Event {
    Insert(InstanceKey),
    Remove(InstanceKey),
}

#[derive(Default)]
struct Subscriber {
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    events: VecDeque<Event>,
    waker: Option<Waker>,
}

impl Subscriber {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn push(&self, event: Event) {
        let mut queue = self.lock();
        queue.events.push_back(event);
        if let Some(waker) = queue.waker.take() {
            waker.wake();
        }
    }

    fn wake(&self) {
        if let Some(waker) = self.lock().waker.take() {
            waker.wake();
        }
    }
}

impl<M: MakeEndpoint + Unpin> Stream for RegistryDiscover<M> {
    type Item = Result<Change<InstanceKey, M::Service>, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let event = {
            let mut queue = this.subscriber.lock();
            match queue.events.pop_front() {
                Some(event) => event,
                None if this.registry.strong_count() == 0 => return Poll::Ready(None),
                None => {
                    // A balancer polls its discovery on every call, usually with
                    // the same waker: keep it rather than trade it for a clone.
                    let known = queue.waker.as_ref();
                    if !known.is_some_and(|waker| waker.will_wake(cx.waker())) {
                        queue.waker = Some(cx.waker().clone());
                    }
                    return Poll::Pending;
                }
            }
        };
        let change = match event {
            Event::Insert(key) => {
                let service = this.make_endpoint.make_endpoint(key.instance());
                Change::Insert(key, service)
            }
            Event::Remove(key) => Change::Remove(key),
        };
        Poll::Ready(Some(Ok(change)))
    }
}

impl<M> fmt::Debug for RegistryDiscover<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryDiscover")
            .field("queued", &self.subscriber.lock().events.len())
            .finish_non_exhaustive()
    }
}
