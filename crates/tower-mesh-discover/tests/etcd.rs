//! `EtcdDiscover` and `Registration` against a real etcd on loopback, started by
//! each test in a temporary directory on random ports. Every wait is bounded and
//! ends as soon as the stream shows what is expected; where a test must show that
//! something did *not* happen, it writes a sentinel record after it and waits for
//! that, since the watch delivers changes in order.
#![cfg(feature = "etcd")]

mod support;

use std::time::Duration;

use etcd_client::{Client, CompactionOptions, PutOptions};
use tower_mesh_balance::ServiceInstance;
use tower_mesh_discover::{to_record, EtcdDiscover, EtcdDiscoverBuilder, Registration};

use support::etcd::Etcd;
use support::proxy::Proxy;
use support::Seen;

const WITHIN: Duration = Duration::from_secs(20);
const PREFIX: &str = "/services/users/";

fn endpoint(_: &ServiceInstance) {}

fn fast(prefix: &str, endpoint: String) -> EtcdDiscoverBuilder {
    EtcdDiscover::builder(prefix)
        .endpoints([endpoint])
        .request_timeout(Duration::from_secs(2))
        .retry_backoff(Duration::from_millis(50), Duration::from_millis(500))
}

async fn put(client: &mut Client, id: &str, port: u16, weight: u32) {
    let instance = ServiceInstance::new(id, "127.0.0.1", port).with_weight(weight);
    let key = format!("{PREFIX}{id}");
    client
        .put(key, to_record(&instance), None)
        .await
        .expect("put");
}

async fn delete(client: &mut Client, id: &str) {
    client
        .delete(format!("{PREFIX}{id}"), None)
        .await
        .expect("delete");
}

#[tokio::test]
async fn puts_and_deletes_are_followed() {
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    put(&mut client, "a", 8001, 1).await;
    let mut seen = Seen::new(
        fast(PREFIX, etcd.endpoint())
            .build(endpoint)
            .expect("valid settings"),
    );

    // What was there before the stream started comes from the first read.
    seen.until_ids(&["a"], WITHIN).await;
    assert_eq!(seen.instances["a"].address(), "127.0.0.1:8001");

    // Later puts and deletes come from the watch.
    put(&mut client, "b", 8002, 1).await;
    seen.until_ids(&["a", "b"], WITHIN).await;
    put(&mut client, "a", 8001, 4).await;
    seen.until("a's weight 4", WITHIN, |s| s["a"].weight == 4)
        .await;
    delete(&mut client, "b").await;
    seen.until_ids(&["a"], WITHIN).await;

    // A record without an id takes its key's name; metadata arrives.
    let record = r#"{"host": "127.0.0.1", "port": 8003, "metadata": {"zone": "z1"}}"#;
    client
        .put(format!("{PREFIX}c"), record, None)
        .await
        .expect("put");
    seen.until_ids(&["a", "c"], WITHIN).await;
    assert_eq!(seen.instances["c"].metadata["zone"], "z1");
}

#[tokio::test]
async fn malformed_records_are_skipped_and_never_remove_good_ones() {
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    put(&mut client, "good", 8001, 2).await;
    client
        .put(format!("{PREFIX}garbage"), "not json", None)
        .await
        .unwrap();
    client
        .put(
            format!("{PREFIX}no-host"),
            r#"{"host": "", "port": 1}"#,
            None,
        )
        .await
        .unwrap();
    let mut non_utf8 = PREFIX.as_bytes().to_vec();
    non_utf8.extend_from_slice(b"\xff\xfe");
    client
        .put(non_utf8, r#"{"host": "h", "port": 1}"#, None)
        .await
        .unwrap();
    let mut seen = Seen::new(
        fast(PREFIX, etcd.endpoint())
            .build(endpoint)
            .expect("valid settings"),
    );
    seen.until_ids(&["good"], WITHIN).await;

    // Garbage over a good record, and more garbage; then a sentinel.
    client
        .put(format!("{PREFIX}good"), "{\"host\":", None)
        .await
        .unwrap();
    client
        .put(
            format!("{PREFIX}bad-port"),
            r#"{"host": "h", "port": 99999}"#,
            None,
        )
        .await
        .unwrap();
    put(&mut client, "sentinel", 8009, 1).await;
    seen.until_ids(&["good", "sentinel"], WITHIN).await;
    assert_eq!(
        seen.instances["good"].weight, 2,
        "the good record was kept as it was"
    );

    // A good value over the key replaces it; deleting it removes it.
    put(&mut client, "good", 8001, 5).await;
    seen.until("good's weight 5", WITHIN, |s| s["good"].weight == 5)
        .await;
    delete(&mut client, "good").await;
    seen.until_ids(&["sentinel"], WITHIN).await;
    #[cfg(feature = "metrics")]
    {
        let labels = [("source", "etcd"), ("target", PREFIX)];
        let rejected =
            support::metered::counter("tower_mesh_discover_rejected_records_total", &labels);
        assert!(
            rejected >= 5,
            "every malformed record is counted ({rejected})"
        );
    }
}

#[tokio::test]
async fn an_expired_lease_removes_the_instance() {
    let etcd = Etcd::start().await;
    let mut client = etcd.client().await;
    let mut seen = Seen::new(
        fast(PREFIX, etcd.endpoint())
            .build(endpoint)
            .expect("valid settings"),
    );

    // A process that registered under a 2 s lease, then died: no keep-alive.
    let lease = client.lease_grant(2, None).await.expect("grant").id();
    let instance = ServiceInstance::new("mortal", "127.0.0.1", 8001);
    let options = PutOptions::new().with_lease(lease);
    client
        .put(
            format!("{PREFIX}mortal"),
            to_record(&instance),
            Some(options),
        )
        .await
        .unwrap();
    seen.until_ids(&["mortal"], WITHIN).await;
    seen.until_ids(&[], WITHIN).await;
}

#[tokio::test]
async fn a_registration_lives_until_deregistered_or_dropped() {
    let etcd = Etcd::start().await;
    let mut seen = Seen::new(
        fast(PREFIX, etcd.endpoint())
            .build(endpoint)
            .expect("valid settings"),
    );
    let ttl = Duration::from_secs(2);

    let me = ServiceInstance::new("me", "127.0.0.1", 8001).with_weight(3);
    let registration = Registration::register(etcd.client().await, PREFIX, &me, ttl)
        .await
        .unwrap();
    assert_eq!(registration.key(), "/services/users/me");
    seen.until_ids(&["me"], WITHIN).await;
    assert_eq!(seen.instances["me"], me);

    // Well past the lease's time to live, the keep-alives hold it.
    seen.no_change_for(ttl * 3).await;
    let mut client = etcd.client().await;
    let remaining = client
        .lease_time_to_live(registration.lease_id(), None)
        .await
        .unwrap()
        .ttl();
    assert!(remaining > 0, "the lease is alive ({remaining} s left)");

    // Deregistering revokes the lease: the instance goes at once, not at expiry.
    registration.deregister().await.expect("revoke");
    seen.until_ids(&[], Duration::from_millis(1500)).await;

    // Dropping a registration revokes it in the background.
    let other = ServiceInstance::new("other", "127.0.0.1", 8002);
    let registration = Registration::register(etcd.client().await, PREFIX, &other, ttl * 10).await;
    seen.until_ids(&["other"], WITHIN).await;
    drop(registration);
    seen.until_ids(&[], Duration::from_secs(5)).await;
}

#[tokio::test]
async fn etcd_killed_and_restarted_mid_watch_loses_no_update() {
    #[cfg(feature = "metrics")]
    support::metered::install();
    let mut etcd = Etcd::start().await;
    let prefix = "/restart/";
    let discover = fast(prefix, etcd.endpoint());
    let mut seen = Seen::new(discover.build(endpoint).expect("valid settings"));
    let mut client = etcd.client().await;
    client
        .put(format!("{prefix}a"), record("a", 8001), None)
        .await
        .unwrap();
    seen.until_ids(&["a"], WITHIN).await;

    // etcd dies and comes back on the same data; changes made right after the
    // restart, before the watcher is back, reach it all the same.
    etcd.restart().await;
    let mut client = etcd.client().await;
    client
        .put(format!("{prefix}b"), record("b", 8002), None)
        .await
        .unwrap();
    client.delete(format!("{prefix}a"), None).await.unwrap();
    client
        .put(format!("{prefix}c"), record("c", 8003), None)
        .await
        .unwrap();
    seen.until_ids(&["b", "c"], WITHIN).await;
    #[cfg(feature = "metrics")]
    {
        let resyncs = |reason| {
            let labels = [("target", prefix), ("reason", reason)];
            support::metered::counter("tower_mesh_discover_resyncs_total", &labels)
        };
        assert_eq!(resyncs("start"), 1, "one full read, at the start");
        assert_eq!(
            resyncs("compacted"),
            0,
            "the watch resumed: nothing was read again"
        );
    }
}

#[tokio::test]
async fn a_dropped_connection_resumes_and_a_compacted_revision_is_read_again() {
    #[cfg(feature = "metrics")]
    support::metered::install();
    let etcd = Etcd::start().await;
    let upstream = std::net::SocketAddr::from(([127, 0, 0, 1], etcd.client_port()));
    let proxy = Proxy::start(upstream).await;
    let prefix = "/compact/";
    let discover = fast(prefix, proxy.endpoint());
    let mut seen = Seen::new(discover.build(endpoint).expect("valid settings"));
    let mut client = etcd.client().await;
    client
        .put(format!("{prefix}a"), record("a", 8001), None)
        .await
        .unwrap();
    client
        .put(format!("{prefix}b"), record("b", 8002), None)
        .await
        .unwrap();
    seen.until_ids(&["a", "b"], WITHIN).await;

    // Cut off, it misses a change; back, the watch resumes from where it was.
    proxy.cut();
    client
        .put(format!("{prefix}c"), record("c", 8003), None)
        .await
        .unwrap();
    proxy.restore();
    seen.until_ids(&["a", "b", "c"], WITHIN).await;

    // Cut off again; meanwhile the history it would resume from is compacted.
    proxy.cut();
    client.delete(format!("{prefix}a"), None).await.unwrap();
    let reweighted = to_record(&ServiceInstance::new("b", "127.0.0.1", 8002).with_weight(9));
    let written = client
        .put(format!("{prefix}b"), reweighted, None)
        .await
        .unwrap();
    let revision = written.header().expect("a header").revision();
    let physical = CompactionOptions::new().with_physical();
    client
        .compact(revision, Some(physical))
        .await
        .expect("compact");
    proxy.restore();
    seen.until("b weighing 9 and a gone", WITHIN, |s| {
        s.keys().eq(["b", "c"]) && s["b"].weight == 9
    })
    .await;
    #[cfg(feature = "metrics")]
    {
        let labels = [("target", prefix), ("reason", "compacted")];
        let resyncs = support::metered::counter("tower_mesh_discover_resyncs_total", &labels);
        assert_eq!(
            resyncs, 1,
            "the compacted revision was recovered by a full read"
        );
    }
}

fn record(id: &str, port: u16) -> String {
    to_record(&ServiceInstance::new(id, "127.0.0.1", port))
}

#[tokio::test]
async fn a_balancer_follows_etcd() {
    use tower::{service_fn, Service, ServiceExt};
    use tower_mesh_balance::LoadBalancer;

    let etcd = Etcd::start().await;
    let discover = fast(PREFIX, etcd.endpoint())
        .build(|instance: &ServiceInstance| {
            let id = instance.id.clone();
            service_fn(move |_: ()| {
                let id = id.clone();
                async move { Ok::<_, std::io::Error>(id) }
            })
        })
        .expect("valid settings");
    let mut balancer = LoadBalancer::builder(discover)
        .wait_for_instance(Duration::from_secs(10))
        .build()
        .expect("valid balancer");

    let joining = ServiceInstance::new("joined", "127.0.0.1", 8001);
    let ttl = Duration::from_secs(5);
    let registration = Registration::register(etcd.client().await, PREFIX, &joining, ttl).await;
    let served = balancer.ready().await.unwrap().call(()).await.unwrap();
    assert_eq!(served, "joined");
    registration.unwrap().deregister().await.unwrap();
}
