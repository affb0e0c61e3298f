//! [`DnsDiscover`]: instances from DNS, re-resolved as their records expire.
//!
//! Two kinds of name are followed:
//!
//! - a host name with a port ([`DnsDiscover::host`]): every A and AAAA address
//!   of the name is an instance on that port, of weight 1;
//! - an SRV name ([`DnsDiscover::srv`], such as `_http._tcp.users.internal`):
//!   every address of every target is an instance on the record's port, its
//!   weight the record's weight (0 counts as 1; two records reaching the same
//!   address add up). Only the most preferred priority group (lowest number) is
//!   used; the next one is used only while no target of that group has an
//!   address.
//!
//! An instance's id is its address, `ip:port` (`[ip]:port` for IPv6), so the
//! same endpoint keeps its key from one answer to the next. Its metadata holds
//! the name (`dns.name`) and, for SRV, the target (`srv.target`) and priority
//! (`srv.priority`).
//!
//! # When names are resolved again
//!
//! The first lookup happens when the stream is first polled. After an answer,
//! the next lookup comes when its shortest TTL runs out, but never sooner than
//! [`min_refresh`](DnsDiscoverBuilder::min_refresh) nor later than
//! [`max_refresh`](DnsDiscoverBuilder::max_refresh). Each answer is compared with
//! the last: new addresses are inserted, vanished ones removed, changed weights
//! re-inserted.
//!
//! A lookup that fails (timeout, refused, server error) changes nothing: the last
//! known instances stay, a `warn!` names the error, and lookups are retried from
//! `min_refresh`, doubling up to `max_refresh`. A name without records (NXDOMAIN,
//! or no records of the type) is reported with a `warn!` too, and by default
//! also keeps the last known instances, since a zone being edited can answer
//! empty for a moment; choose [`EmptyAnswer::RemoveAll`] to follow it. An SRV
//! target whose lookup fails fails the whole round, so a transient error never
//! removes the target's instances.
//!
//! The stream never ends and never yields an error. Like every stream it only
//! makes progress while polled; a [`LoadBalancer`](tower_mesh_balance::LoadBalancer)
//! polls it in `poll_ready`.

mod lookup;
mod refresh;

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{Name, TokioResolver};
use tower_mesh_balance::MakeEndpoint;
use tower_mesh_core::ConfigError;

use self::lookup::Query;
use self::refresh::{Refresh, Timing};
use crate::changes::{discover_stream, Changes};
use crate::telemetry::Telemetry;

/// A discovery stream of the instances a DNS name resolves to; see the
/// [module documentation](self) for how names are followed.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
/// use tower::service_fn;
/// use tower_mesh_balance::{InstanceKey, LoadBalancer, LoadBalancerStrategy, ServiceInstance};
/// use tower_mesh_discover::DnsDiscover;
///
/// # #[tokio::main] async fn main() -> Result<(), tower_mesh_core::BoxError> {
/// let discover = DnsDiscover::srv("_http._tcp.users.internal")
///     .nameserver("10.0.0.53:53".parse()?)
///     .min_refresh(Duration::from_secs(5))
///     .max_refresh(Duration::from_secs(60))
///     .build(|instance: &ServiceInstance| {
///         let address = instance.address();
///         service_fn(move |_: ()| {
///             let address = address.clone();
///             async move { Ok::<_, std::io::Error>(address) }
///         })
///     })?;
/// let balancer = LoadBalancer::builder(discover)
///     .strategy(LoadBalancerStrategy::Weighted)
///     .weight_by(InstanceKey::weight)
///     .build()?;
/// # let _: &LoadBalancer<_, ()> = &balancer;
/// # Ok(()) }
/// ```
pub struct DnsDiscover<M> {
    changes: Changes<M>,
}

discover_stream!(DnsDiscover);

impl DnsDiscover<()> {
    /// Follows the A and AAAA records of `name`, each address an instance on
    /// `port`.
    pub fn host(name: impl Into<String>, port: u16) -> DnsDiscoverBuilder {
        DnsDiscoverBuilder::new(Query::Host {
            name: name.into(),
            port,
        })
    }

    /// Follows the SRV records of `name` (for example `_http._tcp.users.internal`).
    pub fn srv(name: impl Into<String>) -> DnsDiscoverBuilder {
        DnsDiscoverBuilder::new(Query::Srv { name: name.into() })
    }
}

/// What a [`DnsDiscover`] does when its name has no records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmptyAnswer {
    /// Keep the last known instances (the default).
    #[default]
    KeepLastKnown,
    /// Remove every instance, as the answer says.
    RemoveAll,
}

/// Builds a [`DnsDiscover`]; start with [`DnsDiscover::host`] or [`DnsDiscover::srv`].
///
/// Setters never fail; [`build`](Self::build) checks every value.
#[derive(Clone)]
pub struct DnsDiscoverBuilder {
    query: Query,
    nameservers: Vec<SocketAddr>,
    timing: Timing,
    query_timeout: Duration,
    retries: usize,
    on_empty: EmptyAnswer,
}

impl DnsDiscoverBuilder {
    fn new(query: Query) -> Self {
        DnsDiscoverBuilder {
            query,
            nameservers: Vec::new(),
            timing: Timing {
                min_refresh: Duration::from_secs(5),
                max_refresh: Duration::from_secs(300),
            },
            query_timeout: Duration::from_secs(5),
            retries: 2,
            on_empty: EmptyAnswer::KeepLastKnown,
        }
    }

    /// Asks this server (over UDP, then TCP for long answers). Call it again to
    /// add servers. Without any, the system's configuration (`/etc/resolv.conf`)
    /// is used.
    pub fn nameserver(mut self, address: SocketAddr) -> Self {
        self.nameservers.push(address);
        self
    }

    /// The shortest wait between two lookups, whatever the TTL (default 5 s); also
    /// the first wait after a failure.
    pub fn min_refresh(mut self, wait: Duration) -> Self {
        self.timing.min_refresh = wait;
        self
    }

    /// The longest wait between two lookups, whatever the TTL (default 300 s);
    /// also the longest wait after failures.
    pub fn max_refresh(mut self, wait: Duration) -> Self {
        self.timing.max_refresh = wait;
        self
    }

    /// How long one query waits for an answer (default 5 s).
    pub fn query_timeout(mut self, timeout: Duration) -> Self {
        self.query_timeout = timeout;
        self
    }

    /// How many times a timed-out query is sent again before the lookup fails
    /// (default 2).
    pub fn retries(mut self, retries: usize) -> Self {
        self.retries = retries;
        self
    }

    /// What an answer without records does (default
    /// [`KeepLastKnown`](EmptyAnswer::KeepLastKnown)).
    pub fn on_empty(mut self, on_empty: EmptyAnswer) -> Self {
        self.on_empty = on_empty;
        self
    }

    /// The stream, making each discovered instance into an endpoint with
    /// `make_endpoint`. Nothing is resolved until it is polled.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the setting: `host` or `srv` when the name is not
    /// a valid domain name, `min_refresh` or `query_timeout` when zero,
    /// `max_refresh` when below `min_refresh`, and `nameserver` when none was
    /// given and the system configuration cannot be read.
    pub fn build<M: MakeEndpoint>(self, make_endpoint: M) -> Result<DnsDiscover<M>, ConfigError> {
        self.validate()?;
        let resolver = self.resolver()?;
        let refresh = Refresh {
            resolver,
            telemetry: Telemetry::new("dns", self.query.name()),
            query: self.query,
            timing: self.timing,
            on_empty: self.on_empty,
            failures: 0,
            empty: false,
            next_round: None,
        };
        Ok(DnsDiscover {
            changes: Changes::new(refresh.snapshots(), make_endpoint),
        })
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let field = match self.query {
            Query::Host { .. } => "host",
            Query::Srv { .. } => "srv",
        };
        let name = self.query.name();
        if name.is_empty() {
            return Err(ConfigError::new(field, "the name is empty"));
        }
        if let Err(error) = Name::from_str(name) {
            return Err(ConfigError::new(
                field,
                format!("`{name}` is not a domain name: {error}"),
            ));
        }
        let Timing {
            min_refresh,
            max_refresh,
        } = self.timing;
        if min_refresh.is_zero() {
            return Err(ConfigError::new("min_refresh", "must be above zero"));
        }
        if max_refresh < min_refresh {
            let reason = format!("{max_refresh:?} is below `min_refresh` ({min_refresh:?})");
            return Err(ConfigError::new("max_refresh", reason));
        }
        if self.query_timeout.is_zero() {
            return Err(ConfigError::new("query_timeout", "must be above zero"));
        }
        Ok(())
    }

    fn resolver(&self) -> Result<TokioResolver, ConfigError> {
        let (config, mut options) = self.resolver_config()?;
        options.timeout = self.query_timeout;
        options.attempts = self.retries;
        options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        let provider = TokioConnectionProvider::default();
        let builder = TokioResolver::builder_with_config(config, provider);
        Ok(builder.with_options(options).build())
    }

    /// The servers to ask: the ones given, or the system's.
    fn resolver_config(&self) -> Result<(ResolverConfig, ResolverOpts), ConfigError> {
        if self.nameservers.is_empty() {
            return hickory_resolver::system_conf::read_system_conf().map_err(|error| {
                let reason = format!("none given, and the system's cannot be read: {error}");
                ConfigError::new("nameserver", reason)
            });
        }
        let mut config = ResolverConfig::new();
        for &address in &self.nameservers {
            config.add_name_server(NameServerConfig::new(address, Protocol::Udp));
            config.add_name_server(NameServerConfig::new(address, Protocol::Tcp));
        }
        let mut options = ResolverOpts::default();
        // The servers were named on purpose: do not answer from the hosts file.
        options.use_hosts_file = ResolveHosts::Never;
        Ok((config, options))
    }
}

impl fmt::Debug for DnsDiscoverBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsDiscoverBuilder")
            .field("query", &self.query)
            .field("nameservers", &self.nameservers)
            .field("min_refresh", &self.timing.min_refresh)
            .field("max_refresh", &self.timing.max_refresh)
            .field("query_timeout", &self.query_timeout)
            .field("retries", &self.retries)
            .field("on_empty", &self.on_empty)
            .finish()
    }
}
