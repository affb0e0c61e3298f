//! Turning a [`ServiceInstance`] into the [`InstanceKey`] a balancer keys it by.

use tower_mesh_balance::{InstanceKey, ServiceInstance};
use tower_mesh_core::ConfigError;

/// Checks that `instance` is usable by a balancer, and returns its key.
///
/// The checks are the ones `ServiceRegistry::register` makes: a non-empty id and
/// host, and a weight of at least 1.
pub(crate) fn instance_key(instance: ServiceInstance) -> Result<InstanceKey, ConfigError> {
    if instance.id.is_empty() {
        return Err(ConfigError::new("id", "an instance needs a non-empty id"));
    }
    if instance.host.is_empty() {
        return Err(ConfigError::new(
            "host",
            "an instance needs a non-empty host",
        ));
    }
    if instance.weight == 0 {
        return Err(ConfigError::new("weight", "must be at least 1, got 0"));
    }
    Ok(InstanceKey::from(instance))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_carries_the_instance() {
        let instance = ServiceInstance::new("a", "10.0.0.1", 80).with_weight(3);
        let key = instance_key(instance.clone()).expect("valid");
        assert_eq!(key.id(), "a");
        assert_eq!(key.weight(), 3);
        assert_eq!(key.instance(), &instance);
    }

    #[test]
    fn an_invalid_instance_names_its_field() {
        let no_id = ServiceInstance::new("", "h", 80);
        assert_eq!(instance_key(no_id).unwrap_err().field(), "id");
        let no_host = ServiceInstance::new("a", "", 80);
        assert_eq!(instance_key(no_host).unwrap_err().field(), "host");
        let no_weight = ServiceInstance::new("a", "h", 80).with_weight(0);
        assert_eq!(instance_key(no_weight).unwrap_err().field(), "weight");
    }
}
