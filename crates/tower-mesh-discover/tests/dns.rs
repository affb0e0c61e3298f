//! `DnsDiscover` against a real dnsmasq on loopback, started by each test with its
//! own records on a random port. The records have a TTL of 1 s, so the source
//! re-resolves every second; each wait is bounded and ends as soon as the stream
//! shows what is expected.
#![cfg(feature = "dns")]

mod support;

use std::time::Duration;

use tower_mesh_balance::ServiceInstance;
use tower_mesh_discover::{DnsDiscover, DnsDiscoverBuilder, EmptyAnswer};

use support::dnsmasq::Dnsmasq;
use support::Seen;

/// Long enough for a few refreshes, even on a loaded machine.
const WITHIN: Duration = Duration::from_secs(15);

fn fast(builder: DnsDiscoverBuilder, server: &Dnsmasq) -> DnsDiscoverBuilder {
    builder
        .nameserver(server.address())
        .min_refresh(Duration::from_millis(100))
        .max_refresh(Duration::from_secs(1))
        .query_timeout(Duration::from_millis(300))
        .retries(0)
}

fn endpoint(_: &ServiceInstance) {}

#[tokio::test]
async fn host_addresses_added_changed_and_removed_are_followed() {
    let hosts = "127.0.0.10 api.mesh.test\n127.0.0.11 api.mesh.test\n::1 api.mesh.test\n";
    let server = Dnsmasq::start(hosts, "").await;
    let discover = fast(DnsDiscover::host("api.mesh.test", 8080), &server).build(endpoint);
    let mut seen = Seen::new(discover.expect("valid settings"));

    // A and AAAA records both become instances, identified by address.
    seen.until_ids(
        &["127.0.0.10:8080", "127.0.0.11:8080", "[::1]:8080"],
        WITHIN,
    )
    .await;
    let instance = &seen.instances["127.0.0.10:8080"];
    assert_eq!(
        (instance.host.as_str(), instance.port, instance.weight),
        ("127.0.0.10", 8080, 1)
    );
    assert_eq!(instance.metadata["dns.name"], "api.mesh.test");

    // One address changes, one is removed, one is added.
    server
        .set_hosts("127.0.0.10 api.mesh.test\n127.0.0.12 api.mesh.test\n")
        .await;
    seen.until_ids(&["127.0.0.10:8080", "127.0.0.12:8080"], WITHIN)
        .await;

    server.set_hosts("127.0.0.13 api.mesh.test\n").await;
    seen.until_ids(&["127.0.0.13:8080"], WITHIN).await;
}

#[tokio::test]
async fn srv_weights_arrive_and_only_the_preferred_priority_is_used() {
    let hosts = "127.0.0.21 a.mesh.test\n127.0.0.22 b.mesh.test\n127.0.0.23 c.mesh.test\n";
    let records = "srv-host=_http._tcp.svc.mesh.test,a.mesh.test,8001,10,5\n\
                   srv-host=_http._tcp.svc.mesh.test,b.mesh.test,8002,10,1\n\
                   srv-host=_http._tcp.svc.mesh.test,c.mesh.test,8003,20,7\n";
    let mut server = Dnsmasq::start(hosts, records).await;
    let discover = fast(DnsDiscover::srv("_http._tcp.svc.mesh.test"), &server).build(endpoint);
    let mut seen = Seen::new(discover.expect("valid settings"));

    // Priority 10 wins; c (priority 20) is a backup and stays out.
    seen.until_ids(&["127.0.0.21:8001", "127.0.0.22:8002"], WITHIN)
        .await;
    let weights: Vec<u32> = seen.weights().into_values().collect();
    assert_eq!(weights, [5, 1], "the SRV weights");
    let a = &seen.instances["127.0.0.21:8001"];
    assert_eq!(a.metadata["srv.target"], "a.mesh.test");
    assert_eq!(a.metadata["srv.priority"], "10");

    // A changed weight is announced again with the new weight.
    let reweighted = "srv-host=_http._tcp.svc.mesh.test,a.mesh.test,8001,10,2\n\
                      srv-host=_http._tcp.svc.mesh.test,b.mesh.test,8002,10,1\n\
                      srv-host=_http._tcp.svc.mesh.test,c.mesh.test,8003,20,7\n";
    server.restart(reweighted).await;
    seen.until("a's weight 2", WITHIN, |seen| {
        seen.get("127.0.0.21:8001").map(|a| a.weight) == Some(2)
    })
    .await;

    // When no target of the preferred group has an address, the backup is used.
    server.set_hosts("127.0.0.23 c.mesh.test\n").await;
    seen.until_ids(&["127.0.0.23:8003"], WITHIN).await;
    assert_eq!(seen.instances["127.0.0.23:8003"].weight, 7);
}

#[tokio::test]
async fn a_stopped_server_keeps_the_last_known_set() {
    #[cfg(feature = "metrics")]
    support::metered::install();
    let mut server = Dnsmasq::start("127.0.0.31 down.mesh.test\n", "").await;
    let discover = fast(DnsDiscover::host("down.mesh.test", 80), &server).build(endpoint);
    let mut seen = Seen::new(discover.expect("valid settings"));
    seen.until_ids(&["127.0.0.31:80"], WITHIN).await;

    // With the server gone every lookup fails, and nothing is removed.
    server.stop().await;
    seen.no_change_for(Duration::from_secs(3)).await;
    assert_eq!(seen.ids(), ["127.0.0.31:80"]);
    #[cfg(feature = "metrics")]
    {
        let failed = support::metered::lookups("down.mesh.test", "failed");
        assert!(
            failed >= 2,
            "lookups kept being tried and failing ({failed})"
        );
    }

    // Back with other records: the source recovers on its own.
    server.restart("").await;
    server.set_hosts("127.0.0.32 down.mesh.test\n").await;
    seen.until_ids(&["127.0.0.32:80"], WITHIN).await;
}

#[tokio::test]
async fn an_empty_answer_keeps_the_set_unless_told_to_remove() {
    #[cfg(feature = "metrics")]
    support::metered::install();
    let server = Dnsmasq::start("127.0.0.41 gone.mesh.test\n", "").await;
    let name = "gone.mesh.test";
    let keep = fast(DnsDiscover::host(name, 80), &server).build(endpoint);
    let remove = fast(DnsDiscover::host(name, 80), &server).on_empty(EmptyAnswer::RemoveAll);
    let mut keep = Seen::new(keep.expect("valid settings"));
    let mut remove = Seen::new(remove.build(endpoint).expect("valid settings"));
    keep.until_ids(&["127.0.0.41:80"], WITHIN).await;
    remove.until_ids(&["127.0.0.41:80"], WITHIN).await;

    // The name disappears (NXDOMAIN from a zone dnsmasq answers for).
    server.set_hosts("").await;
    remove.until_ids(&[], WITHIN).await;
    keep.no_change_for(Duration::from_secs(2)).await;
    assert_eq!(keep.ids(), ["127.0.0.41:80"]);
    #[cfg(feature = "metrics")]
    assert!(
        support::metered::lookups(name, "empty") >= 2,
        "empty answers are counted"
    );
}

#[tokio::test]
async fn a_balancer_follows_dns() {
    use tower::{service_fn, Service, ServiceExt};
    use tower_mesh_balance::{LoadBalancer, NoHealthyInstanceError};

    let server = Dnsmasq::start("127.0.0.51 lb.mesh.test\n", "").await;
    let discover = fast(DnsDiscover::host("lb.mesh.test", 9000), &server)
        .build(|instance: &ServiceInstance| {
            let host = instance.host.clone();
            service_fn(move |_: ()| {
                let host = host.clone();
                async move { Ok::<_, std::io::Error>(host) }
            })
        })
        .expect("valid settings");
    let mut balancer = LoadBalancer::builder(discover)
        .wait_for_instance(Duration::from_secs(10))
        .build()
        .expect("valid balancer");
    let host = balancer.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(host, "127.0.0.51");

    server.set_hosts("127.0.0.52 lb.mesh.test\n").await;
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        match balancer.ready().await.unwrap().call(()).await {
            Ok(host) if host == "127.0.0.52" => break,
            Ok(_) => {}
            Err(error) => assert!(error.downcast_ref::<NoHealthyInstanceError>().is_some()),
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the balancer never saw the new address"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn invalid_settings_name_their_field() {
    let error = DnsDiscover::host("", 80).build(endpoint).unwrap_err();
    assert_eq!(error.field(), "host");
    let error = DnsDiscover::srv("bad..name").build(endpoint).unwrap_err();
    assert_eq!(error.field(), "srv");
    let zero = DnsDiscover::host("a.test", 80)
        .min_refresh(Duration::ZERO)
        .build(endpoint);
    assert_eq!(zero.unwrap_err().field(), "min_refresh");
    let inverted = DnsDiscover::host("a.test", 80)
        .min_refresh(Duration::from_secs(10))
        .max_refresh(Duration::from_secs(1))
        .build(endpoint);
    assert_eq!(inverted.unwrap_err().field(), "max_refresh");
    let no_timeout = DnsDiscover::host("a.test", 80)
        .query_timeout(Duration::ZERO)
        .build(endpoint);
    assert_eq!(no_timeout.unwrap_err().field(), "query_timeout");
}
