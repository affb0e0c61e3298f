//! [`StaticDiscover`]: a fixed list of instances as a discovery stream.

use futures_util::stream::{self, StreamExt};
use tower_mesh_balance::{MakeEndpoint, ServiceInstance};
use tower_mesh_core::ConfigError;

use crate::changes::{discover_stream, Changes, InstanceSet};
use crate::key::instance_key;

/// A discovery stream of a fixed list of instances.
///
/// It yields one `Change::Insert` per instance, then ends; a
/// [`LoadBalancer`](tower_mesh_balance::LoadBalancer) keeps the endpoints of an
/// ended stream. Useful for tests, for development, and for services whose
/// addresses are set by configuration.
///
/// # Example
///
/// ```
/// use tower::service_fn;
/// use tower_mesh_balance::{InstanceKey, LoadBalancer, ServiceInstance};
/// use tower_mesh_discover::StaticDiscover;
///
/// let instances = [
///     ServiceInstance::new("a", "10.0.0.1", 8080).with_weight(2),
///     ServiceInstance::new("b", "10.0.0.2", 8080),
/// ];
/// let discover = StaticDiscover::new(instances, |instance: &ServiceInstance| {
///     let address = instance.address();
///     service_fn(move |_: ()| {
///         let address = address.clone();
///         async move { Ok::<_, std::io::Error>(address) }
///     })
/// })?;
/// let balancer = LoadBalancer::builder(discover).weight_by(InstanceKey::weight).build()?;
/// # let _: &LoadBalancer<_, ()> = &balancer;
/// # Ok::<(), tower_mesh_core::ConfigError>(())
/// ```
pub struct StaticDiscover<M> {
    changes: Changes<M>,
}

discover_stream!(StaticDiscover);

impl<M: MakeEndpoint> StaticDiscover<M> {
    /// A stream inserting every one of `instances`, each made into an endpoint
    /// by `make_endpoint`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when an instance is invalid (its field is named: empty
    /// `id` or `host`, `weight` of 0), or `instances` when two share an id.
    pub fn new(
        instances: impl IntoIterator<Item = ServiceInstance>,
        make_endpoint: M,
    ) -> Result<Self, ConfigError> {
        let mut set = InstanceSet::new();
        for instance in instances {
            instance_key(instance.clone())?;
            let id = instance.id.clone();
            if set.insert(id.clone(), instance).is_some() {
                return Err(ConfigError::new(
                    "instances",
                    format!("two instances have the id `{id}`"),
                ));
            }
        }
        let snapshots = stream::once(async move { set }).boxed();
        Ok(StaticDiscover {
            changes: Changes::new(snapshots, make_endpoint),
        })
    }

    /// A stream of the instances in a JSON array of instance records (the shape
    /// [`parse_record`](crate::parse_record) reads; each record needs its `id`).
    ///
    /// ```
    /// use tower_mesh_balance::ServiceInstance;
    /// use tower_mesh_discover::StaticDiscover;
    ///
    /// let json = r#"[
    ///     {"id": "a", "host": "10.0.0.1", "port": 8080, "weight": 3},
    ///     {"id": "b", "host": "10.0.0.2", "port": 8080, "metadata": {"zone": "b"}}
    /// ]"#;
    /// let discover = StaticDiscover::from_json(json, |i: &ServiceInstance| i.address())?;
    /// # let _ = discover;
    /// let wrong = StaticDiscover::from_json(r#"[{"host": "h", "port": 1}]"#, |_: &_| ());
    /// assert_eq!(wrong.unwrap_err().field(), "instances");
    /// # Ok::<(), tower_mesh_core::ConfigError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for `instances` when the text is not an array of valid
    /// records, and as [`new`](Self::new) does.
    #[cfg(feature = "json")]
    pub fn from_json(json: &str, make_endpoint: M) -> Result<Self, ConfigError> {
        let invalid = |reason: String| ConfigError::new("instances", reason);
        let records: Vec<crate::record::Record> = serde_json::from_str(json)
            .map_err(|error| invalid(format!("not an array of instance records: {error}")))?;
        let mut instances = Vec::with_capacity(records.len());
        for (position, record) in records.into_iter().enumerate() {
            let instance = record
                .into_instance(None)
                .map_err(|error| invalid(format!("record {position}: {error}")))?;
            instances.push(instance);
        }
        Self::new(instances, make_endpoint)
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;
    use tower::discover::Change;

    use super::*;

    #[tokio::test]
    async fn every_instance_is_inserted_then_the_stream_ends() {
        let instances = [
            ServiceInstance::new("a", "h", 1),
            ServiceInstance::new("b", "h", 2),
        ];
        let mut discover = StaticDiscover::new(instances, |i: &ServiceInstance| i.port).unwrap();
        let mut ports = Vec::new();
        while let Some(change) = discover.next().await {
            match change.unwrap() {
                Change::Insert(_, port) => ports.push(port),
                Change::Remove(key) => panic!("unexpected remove of {key}"),
            }
        }
        assert_eq!(ports, [1, 2]);
    }

    #[test]
    fn duplicate_ids_and_invalid_instances_are_rejected() {
        let twice = [
            ServiceInstance::new("a", "h", 1),
            ServiceInstance::new("a", "h", 2),
        ];
        let error = StaticDiscover::new(twice, |_: &ServiceInstance| ()).unwrap_err();
        assert_eq!(error.field(), "instances");
        let no_host = [ServiceInstance::new("a", "", 1)];
        let error = StaticDiscover::new(no_host, |_: &ServiceInstance| ()).unwrap_err();
        assert_eq!(error.field(), "host");
    }
}
