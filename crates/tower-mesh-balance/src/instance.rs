//! [`ServiceInstance`]: one endpoint of a service, and the key it is known by.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use tower_mesh_core::ConfigError;

/// One endpoint of a service: where it listens, how much traffic it should take,
/// and free-form labels.
///
/// An instance is healthy unless it is marked otherwise
/// ([`ServiceRegistry::mark_healthy`](crate::ServiceRegistry::mark_healthy)) or
/// health checking finds it failing.
///
/// # Example
///
/// ```
/// use tower_mesh_balance::ServiceInstance;
///
/// let instance = ServiceInstance::new("users-1", "10.0.0.7", 8080)
///     .with_weight(3)
///     .with_metadata("zone", "eu-west-1a");
/// assert_eq!(instance.address(), "10.0.0.7:8080");
/// assert_eq!(instance.weight, 3);
/// assert_eq!(instance.metadata["zone"], "eu-west-1a");
///
/// // IPv6 hosts are bracketed, so the address can be parsed back.
/// assert_eq!(ServiceInstance::new("v6", "::1", 9000).address(), "[::1]:9000");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInstance {
    /// Identifies the instance among those of its service; registering another
    /// instance with the same id replaces it.
    pub id: String,
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Relative share of traffic under [`Weighted`](crate::LoadBalancerStrategy::Weighted)
    /// balancing; at least 1 (default 1).
    pub weight: u32,
    /// Free-form labels (zone, version, ...), ordered by key.
    pub metadata: BTreeMap<String, String>,
}

impl ServiceInstance {
    /// An instance with weight 1 and no metadata.
    pub fn new(id: impl Into<String>, host: impl Into<String>, port: u16) -> Self {
        ServiceInstance {
            id: id.into(),
            host: host.into(),
            port,
            weight: 1,
            metadata: BTreeMap::new(),
        }
    }

    /// Sets the weight.
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Adds one metadata label.
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// `host:port`, with an IPv6 host in brackets (`[::1]:80`).
    pub fn address(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Checks the fields a registry relies on.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.id.is_empty() {
            return Err(ConfigError::new("id", "an instance needs a non-empty id"));
        }
        if self.host.is_empty() {
            return Err(ConfigError::new(
                "host",
                "an instance needs a non-empty host",
            ));
        }
        if self.weight == 0 {
            return Err(ConfigError::new("weight", "must be at least 1, got 0"));
        }
        Ok(())
    }
}

// ===== InstanceKey =====

/// The key a [`ServiceRegistry`](crate::ServiceRegistry) gives each instance in the
/// changes it sends to a [`LoadBalancer`](crate::LoadBalancer).
///
/// Two keys are equal when their instance ids are; the key also carries the whole
/// instance, so the balancer can read its weight
/// ([`LoadBalancerBuilder::weight_by`](crate::LoadBalancerBuilder::weight_by)) and a
/// health checker its address.
#[derive(Clone)]
pub struct InstanceKey {
    instance: Arc<ServiceInstance>,
}

impl InstanceKey {
    pub(crate) fn new(instance: Arc<ServiceInstance>) -> Self {
        InstanceKey { instance }
    }

    pub(crate) fn shared(&self) -> Arc<ServiceInstance> {
        self.instance.clone()
    }

    /// The instance's id.
    pub fn id(&self) -> &str {
        &self.instance.id
    }

    /// The instance as it was registered.
    pub fn instance(&self) -> &ServiceInstance {
        &self.instance
    }

    /// The instance's weight: pass `InstanceKey::weight` to
    /// [`LoadBalancerBuilder::weight_by`](crate::LoadBalancerBuilder::weight_by).
    pub fn weight(&self) -> u32 {
        self.instance.weight
    }
}

impl From<ServiceInstance> for InstanceKey {
    /// The key of `instance`, for discovery sources and health checks outside
    /// this crate.
    fn from(instance: ServiceInstance) -> Self {
        InstanceKey::new(Arc::new(instance))
    }
}

impl PartialEq for InstanceKey {
    fn eq(&self, other: &Self) -> bool {
        self.instance.id == other.instance.id
    }
}

impl Eq for InstanceKey {}

impl Hash for InstanceKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.instance.id.hash(state);
    }
}

impl fmt::Debug for InstanceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.instance.id)
    }
}

impl fmt::Display for InstanceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.instance.id)
    }
}
