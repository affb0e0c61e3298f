//! One round of DNS resolution: a name in, the instances it names and how long
//! the answer may be kept out.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::lookup::Lookup;
use hickory_resolver::proto::rr::rdata::SRV;
use hickory_resolver::{ResolveError, TokioResolver};
use tower_mesh_balance::ServiceInstance;

use crate::changes::InstanceSet;

/// What to resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Query {
    /// A and AAAA records of `name`, every address serving on `port`.
    Host { name: String, port: u16 },
    /// SRV records of `name`, each target resolved to its addresses.
    Srv { name: String },
}

impl Query {
    pub(crate) fn name(&self) -> &str {
        match self {
            Query::Host { name, .. } | Query::Srv { name } => name,
        }
    }
}

/// The result of one round.
#[derive(Debug)]
pub(crate) enum Answer {
    /// At least one instance; `ttl` is the shortest TTL of the records used.
    Found {
        instances: InstanceSet,
        ttl: Duration,
    },
    /// The name exists nowhere or has no such records.
    Empty,
    /// The server could not be asked, or answered with an error.
    Failed(ResolveError),
}

/// Resolves `query` once.
pub(crate) async fn resolve(resolver: &TokioResolver, query: &Query) -> Answer {
    match query {
        Query::Host { name, port } => resolve_host(resolver, name, *port).await,
        Query::Srv { name } => resolve_srv(resolver, name).await,
    }
}

async fn resolve_host(resolver: &TokioResolver, name: &str, port: u16) -> Answer {
    let mut instances = InstanceSet::new();
    match addresses(resolver, name).await {
        Ok(Some((addresses, ttl))) => {
            for ip in addresses {
                let instance = instance(ip, port, 1).with_metadata("dns.name", name);
                instances.insert(instance.id.clone(), instance);
            }
            Answer::Found { instances, ttl }
        }
        Ok(None) => Answer::Empty,
        Err(error) => Answer::Failed(error),
    }
}

/// Resolves the SRV records, then the targets of the most preferred priority
/// group that has any address; other groups are used only when it has none.
async fn resolve_srv(resolver: &TokioResolver, name: &str) -> Answer {
    let (groups, srv_ttl) = match resolver.srv_lookup(name).await {
        Ok(lookup) => (
            priority_groups(lookup.iter()),
            shortest_ttl(lookup.as_lookup()),
        ),
        Err(error) if error.is_no_records_found() => return Answer::Empty,
        Err(error) => return Answer::Failed(error),
    };
    for (priority, records) in groups {
        match resolve_group(resolver, name, priority, &records).await {
            Ok(Some((instances, ttl))) => {
                let ttl = ttl.min(srv_ttl);
                return Answer::Found { instances, ttl };
            }
            Ok(None) => continue,
            Err(error) => return Answer::Failed(error),
        }
    }
    Answer::Empty
}

/// SRV records by priority, most preferred (lowest number) first. A target of
/// `.` says the service is not offered there, and is left out.
fn priority_groups<'a>(records: impl Iterator<Item = &'a SRV>) -> BTreeMap<u16, Vec<SRV>> {
    let mut groups: BTreeMap<u16, Vec<SRV>> = BTreeMap::new();
    for record in records.filter(|record| !record.target().is_root()) {
        groups
            .entry(record.priority())
            .or_default()
            .push(record.clone());
    }
    groups
}

type Resolved = Option<(InstanceSet, Duration)>;

/// The instances of one priority group; `None` when no target has an address.
/// Two records reaching the same address and port add their weights.
async fn resolve_group(
    resolver: &TokioResolver,
    name: &str,
    priority: u16,
    records: &[SRV],
) -> Result<Resolved, ResolveError> {
    let mut instances = InstanceSet::new();
    let mut ttl = Duration::MAX;
    for record in records {
        let target = record.target().to_utf8();
        let Some((addresses, target_ttl)) = addresses(resolver, &target).await? else {
            tracing::debug!(srv = %name, %target, "srv target has no address");
            continue;
        };
        ttl = ttl.min(target_ttl);
        for ip in addresses {
            let weight = u32::from(record.weight()).max(1);
            let fresh = instance(ip, record.port(), weight)
                .with_metadata("dns.name", name)
                .with_metadata("srv.target", target.trim_end_matches('.'))
                .with_metadata("srv.priority", priority.to_string());
            let merged = instances
                .entry(fresh.id.clone())
                .or_insert_with(|| fresh.clone().with_weight(0));
            merged.weight = merged.weight.saturating_add(fresh.weight);
        }
    }
    Ok((!instances.is_empty()).then_some((instances, ttl)))
}

/// Every address of `name` (A and AAAA), with the shortest TTL among them;
/// `None` when the name has none.
async fn addresses(
    resolver: &TokioResolver,
    name: &str,
) -> Result<Option<(Vec<IpAddr>, Duration)>, ResolveError> {
    match resolver.lookup_ip(name).await {
        Ok(lookup) => {
            let ttl = shortest_ttl(lookup.as_lookup());
            let addresses: Vec<IpAddr> = lookup.iter().collect();
            Ok((!addresses.is_empty()).then_some((addresses, ttl)))
        }
        Err(error) if error.is_no_records_found() => Ok(None),
        Err(error) => Err(error),
    }
}

fn shortest_ttl(lookup: &Lookup) -> Duration {
    let seconds = lookup.records().iter().map(|record| record.ttl()).min();
    seconds.map_or(Duration::ZERO, |seconds| {
        Duration::from_secs(seconds.into())
    })
}

/// An instance at `ip:port`, identified by that address.
fn instance(ip: IpAddr, port: u16, weight: u32) -> ServiceInstance {
    let id = SocketAddr::new(ip, port).to_string();
    ServiceInstance::new(id, ip.to_string(), port).with_weight(weight)
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use hickory_resolver::Name;

    use super::*;

    fn srv(priority: u16, weight: u16, target: &str) -> SRV {
        SRV::new(priority, weight, 80, Name::from_str(target).unwrap())
    }

    #[test]
    fn groups_come_most_preferred_first_without_dot_targets() {
        let records = [
            srv(20, 1, "b."),
            srv(10, 5, "a."),
            srv(10, 1, "."),
            srv(10, 2, "c."),
        ];
        let groups = priority_groups(records.iter());
        let priorities: Vec<u16> = groups.keys().copied().collect();
        assert_eq!(priorities, [10, 20]);
        assert_eq!(groups[&10].len(), 2, "the `.` target is left out");
    }

    #[test]
    fn instances_are_identified_by_address() {
        let v6 = instance("::1".parse().unwrap(), 80, 1);
        assert_eq!(v6.id, "[::1]:80");
        assert_eq!(v6.address(), v6.id);
        let v4 = instance("10.0.0.1".parse().unwrap(), 80, 4);
        assert_eq!((v4.id.as_str(), v4.weight), ("10.0.0.1:80", 4));
    }
}
