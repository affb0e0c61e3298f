//! Service discovery sources for tower-mesh: where a balancer's instances come
//! from when they live beyond one process.
//!
//! Each source is a [`tower::discover::Discover`] stream of
//! `Change<InstanceKey, S>`, the same shape as
//! [`ServiceRegistry::discover`](tower_mesh_balance::ServiceRegistry::discover), so
//! it plugs straight into
//! [`LoadBalancer::builder`](tower_mesh_balance::LoadBalancer::builder). A
//! [`MakeEndpoint`](tower_mesh_balance::MakeEndpoint) (any
//! `FnMut(&ServiceInstance) -> S`) turns each discovered instance into the
//! service that calls it.
//!
//! - [`StaticDiscover`]: a fixed list, or a JSON file of instance records (`json`
//!   feature).
//! - `DnsDiscover` (`dns` feature, on by default): A/AAAA or SRV records,
//!   re-resolved as their TTL runs out, each answer diffed against the last.
//! - `EtcdDiscover` (`etcd` feature): instance records under a key prefix, read
//!   then watched, with `Registration` to publish an instance under a lease.
//!
//! Every source diffs what it learns into inserts and removes against what it
//! announced before, so the balancer sees a change only when an instance really
//! appears, disappears or changes. Failures to reach a server keep the last
//! known instances. Records from DNS or etcd are untrusted input: one that would
//! make an unusable instance (malformed JSON, an empty host, a weight of 0) is
//! skipped with a `warn!` and never removes the good ones.
//!
//! # Example
//!
//! ```
//! use tower::{service_fn, Service, ServiceExt};
//! use tower_mesh_balance::{InstanceKey, LoadBalancer, LoadBalancerStrategy, ServiceInstance};
//! use tower_mesh_discover::StaticDiscover;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_mesh_core::BoxError> {
//! let instances = [
//!     ServiceInstance::new("a", "10.0.0.1", 8001).with_weight(3),
//!     ServiceInstance::new("b", "10.0.0.2", 8002),
//! ];
//! let discover = StaticDiscover::new(instances, |instance: &ServiceInstance| {
//!     let port = instance.port;
//!     service_fn(move |_: ()| async move { Ok::<_, std::io::Error>(port) })
//! })?;
//! let mut balancer = LoadBalancer::builder(discover)
//!     .strategy(LoadBalancerStrategy::Weighted)
//!     .weight_by(InstanceKey::weight)
//!     .build()?;
//! let mut ports = Vec::new();
//! for _ in 0..4 {
//!     ports.push(balancer.ready().await?.call(()).await?);
//! }
//! assert_eq!(ports.iter().filter(|&&port| port == 8001).count(), 3);
//! # Ok(()) }
//! ```
//!
//! # Features
//!
//! - `dns` (default): `DnsDiscover`, with `hickory-resolver`.
//! - `etcd`: `EtcdDiscover` and `Registration`, with `etcd-client`. Off by default
//!   because `etcd-client` compiles protobufs at build time and needs `protoc`
//!   (Debian: `protobuf-compiler`). Implies `json`.
//! - `json`: `StaticDiscover::from_json`, `parse_record` and `to_record`.
//! - `metrics`: the counters and gauges below.
//!
//! # Logging and metrics
//!
//! Instances inserted and removed are `debug!` events carrying the instance id;
//! failed lookups, empty answers, lost etcd connections and skipped records are
//! `warn!` events. With the `metrics` feature every source reports, labelled
//! `source` (`dns` or `etcd`) and `target` (the name looked up or the prefix):
//!
//! - `tower_mesh_discover_lookups_total{result}` (counter, DNS): `found`, `empty`
//!   or `failed`;
//! - `tower_mesh_discover_instances` (gauge): the instances the source wants;
//! - `tower_mesh_discover_rejected_records_total` (counter, etcd): malformed
//!   records skipped;
//! - `tower_mesh_discover_errors_total` (counter, etcd): failed connections,
//!   reads and watches;
//! - `tower_mesh_discover_resyncs_total{reason}` (counter, etcd): full reads, at
//!   `start` or after the watched revision was `compacted`.

#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, unreachable_pub, rust_2018_idioms)]

mod changes;
#[cfg(feature = "dns")]
pub mod dns;
#[cfg(feature = "etcd")]
pub mod etcd;
mod key;
#[cfg(feature = "json")]
mod record;
mod static_list;
mod telemetry;

#[cfg(feature = "dns")]
pub use dns::{DnsDiscover, DnsDiscoverBuilder, EmptyAnswer};
#[cfg(feature = "etcd")]
pub use etcd::{EtcdDiscover, EtcdDiscoverBuilder, Registration};
#[cfg(feature = "json")]
pub use record::{parse_record, to_record, RecordError};
pub use static_list::StaticDiscover;
