//! [`EtcdDiscover`]: instances from records under an etcd key prefix, and
//! [`Registration`] to publish one.
//!
//! Each key under the prefix holds one instance record in JSON (see
//! [`parse_record`](crate::parse_record)); when the record has no `id`, the key
//! without the prefix is the id. The stream reads every record under the prefix,
//! then watches the prefix from the revision right after that read, so no change
//! is missed and none is applied twice.
//!
//! When the connection drops or etcd restarts, the watch is opened again from
//! the revision after the last change applied. If etcd has compacted that
//! revision away meanwhile, every record is read again and the result diffed
//! against what the balancer has. Throughout, the last known instances stay,
//! errors are `warn!` events, and attempts are spaced by a backoff
//! ([`retry_backoff`](EtcdDiscoverBuilder::retry_backoff)).
//!
//! A record that cannot be read (not JSON, no host, port 0, weight 0, a key that
//! is not UTF-8) is skipped with a `warn!`. It never removes a good record: a
//! malformed value written over a good one leaves the good one in place until
//! the key is deleted or a good value is written again.
//!
//! The stream never ends and never yields an error; it makes progress while
//! polled, as a [`LoadBalancer`](tower_mesh_balance::LoadBalancer) does in
//! `poll_ready`.
//!
//! A full read fetches every record in one response, so the records under one
//! prefix must fit in one gRPC message (4 MiB with `etcd-client`'s defaults,
//! thousands of instances).

mod follow;
mod records;
mod register;

use std::fmt;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use tower_mesh_balance::MakeEndpoint;
use tower_mesh_core::ConfigError;

use self::follow::{Backoff, Connect, Follow};
use self::records::Records;
use crate::changes::{discover_stream, Changes};
use crate::telemetry::Telemetry;

pub use self::register::Registration;

/// A discovery stream of the instance records under an etcd key prefix; see the
/// [module documentation](self) for how changes are followed.
///
/// # Example
///
/// ```no_run
/// use tower::service_fn;
/// use tower_mesh_balance::{InstanceKey, LoadBalancer, ServiceInstance};
/// use tower_mesh_discover::EtcdDiscover;
///
/// let discover = EtcdDiscover::builder("/services/users/")
///     .endpoints(["http://10.0.0.2:2379", "http://10.0.0.3:2379"])
///     .build(|instance: &ServiceInstance| {
///         let address = instance.address();
///         service_fn(move |_: ()| {
///             let address = address.clone();
///             async move { Ok::<_, std::io::Error>(address) }
///         })
///     })?;
/// let balancer = LoadBalancer::builder(discover).weight_by(InstanceKey::weight).build()?;
/// # let _: &LoadBalancer<_, ()> = &balancer;
/// # Ok::<(), tower_mesh_core::ConfigError>(())
/// ```
pub struct EtcdDiscover<M> {
    changes: Changes<M>,
}

discover_stream!(EtcdDiscover);

impl EtcdDiscover<()> {
    /// Follows the records under `prefix` (such as `/services/users/`).
    pub fn builder(prefix: impl Into<String>) -> EtcdDiscoverBuilder {
        EtcdDiscoverBuilder {
            prefix: prefix.into(),
            endpoints: Vec::new(),
            options: ConnectOptions::new()
                .with_connect_timeout(Duration::from_secs(5))
                .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
                .with_keep_alive_while_idle(true),
            client: None,
            request_timeout: Duration::from_secs(5),
            backoff: Backoff {
                initial: Duration::from_millis(200),
                max: Duration::from_secs(10),
            },
        }
    }
}

/// Builds an [`EtcdDiscover`]; start with [`EtcdDiscover::builder`].
///
/// Setters never fail; [`build`](Self::build) checks every value.
pub struct EtcdDiscoverBuilder {
    prefix: String,
    endpoints: Vec<String>,
    options: ConnectOptions,
    client: Option<Client>,
    request_timeout: Duration,
    backoff: Backoff,
}

impl EtcdDiscoverBuilder {
    /// The etcd servers to connect to (`http://host:port`), when the stream is
    /// first polled.
    pub fn endpoints(mut self, endpoints: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.endpoints = endpoints.into_iter().map(Into::into).collect();
        self
    }

    /// How to connect to the [`endpoints`](Self::endpoints): TLS, credentials,
    /// timeouts (default: a 5 s connect timeout and HTTP/2 keep-alive pings every
    /// 10 s, so a dead connection is noticed).
    pub fn connect_options(mut self, options: ConnectOptions) -> Self {
        self.options = options;
        self
    }

    /// Uses a client made elsewhere instead of connecting to endpoints.
    pub fn client(mut self, client: Client) -> Self {
        self.client = Some(client);
        self
    }

    /// How long connecting, reading the records and opening the watch may take
    /// before the attempt counts as failed (default 5 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The wait after an error, doubling from `initial` per error in a row up to
    /// `max` (default 200 ms up to 10 s).
    pub fn retry_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff = Backoff { initial, max };
        self
    }

    /// The stream, making each discovered instance into an endpoint with
    /// `make_endpoint`. Nothing is connected until it is polled.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the setting: `prefix` when empty, `endpoints`
    /// when neither endpoints nor a client were given, `request_timeout` or
    /// `retry_backoff` when zero, and `retry_backoff` when its maximum is below
    /// its initial wait.
    pub fn build<M: MakeEndpoint>(self, make_endpoint: M) -> Result<EtcdDiscover<M>, ConfigError> {
        self.validate()?;
        let connect = match self.client {
            Some(client) => Connect::Client(Box::new(client)),
            None => Connect::Endpoints(self.endpoints, self.options),
        };
        let telemetry = Telemetry::new("etcd", self.prefix.clone());
        let follow = Follow {
            connect,
            client: None,
            records: Records::new(self.prefix, telemetry.clone()),
            revision: None,
            watch: None,
            read_before: false,
            request_timeout: self.request_timeout,
            backoff: self.backoff,
            failures: 0,
            telemetry,
        };
        Ok(EtcdDiscover {
            changes: Changes::new(follow.snapshots(), make_endpoint),
        })
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.prefix.is_empty() {
            return Err(ConfigError::new(
                "prefix",
                "an empty prefix would watch every key",
            ));
        }
        if self.endpoints.is_empty() && self.client.is_none() {
            return Err(ConfigError::new("endpoints", "give endpoints or a client"));
        }
        if self.request_timeout.is_zero() {
            return Err(ConfigError::new("request_timeout", "must be above zero"));
        }
        let Backoff { initial, max } = self.backoff;
        if initial.is_zero() {
            return Err(ConfigError::new(
                "retry_backoff",
                "the initial wait must be above zero",
            ));
        }
        if max < initial {
            let reason = format!("the maximum {max:?} is below the initial wait {initial:?}");
            return Err(ConfigError::new("retry_backoff", reason));
        }
        Ok(())
    }
}

impl fmt::Debug for EtcdDiscoverBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdDiscoverBuilder")
            .field("prefix", &self.prefix)
            .field("endpoints", &self.endpoints)
            .field("client", &self.client.is_some())
            .field("request_timeout", &self.request_timeout)
            .field("backoff", &self.backoff)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_settings_name_their_field() {
        let endpoint = |_: &tower_mesh_balance::ServiceInstance| ();
        let field = |builder: EtcdDiscoverBuilder| builder.build(endpoint).unwrap_err().field();
        let valid = || EtcdDiscover::builder("/svc/").endpoints(["http://127.0.0.1:2379"]);
        assert_eq!(
            field(EtcdDiscover::builder("").endpoints(["http://h:1"])),
            "prefix"
        );
        assert_eq!(field(EtcdDiscover::builder("/svc/")), "endpoints");
        assert_eq!(
            field(valid().request_timeout(Duration::ZERO)),
            "request_timeout"
        );
        let zero = valid().retry_backoff(Duration::ZERO, Duration::from_secs(1));
        assert_eq!(field(zero), "retry_backoff");
        let inverted = valid().retry_backoff(Duration::from_secs(2), Duration::from_secs(1));
        assert_eq!(field(inverted), "retry_backoff");
        assert!(
            valid().build(endpoint).is_ok(),
            "building connects to nothing"
        );
    }
}
