//! Instances that join and leave through etcd while traffic flows through a
//! `ServiceProxy`.
//!
//! Run with `cargo run --example etcd_discovery --features tower-mesh-examples/etcd`
//! (building it needs `protoc`). With `ETCD_ENDPOINT` set (`http://host:2379`)
//! it uses that etcd; otherwise it starts a throwaway `etcd` (Debian:
//! `etcd-server`) in a temporary directory on free loopback ports.
//!
//! Each instance is an in-process endpoint that answers with its id. It joins by
//! writing its record under a lease (`Registration`), and the proxy, built over
//! an `EtcdDiscover` on the same prefix, starts sending it calls; it leaves by
//! deregistering, or by dropping its registration as a process would by dying.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::time::{sleep, Instant};
use tower::{service_fn, Service};
use tower_mesh::prelude::*;
use tower_mesh_discover::{EtcdDiscover, Registration};

type Proxy = ServiceProxy<(), String>;

/// An in-process endpoint that answers with the id of the instance it stands for.
fn endpoint(
    instance: &ServiceInstance,
) -> impl Service<(), Response = String, Error = Infallible, Future: Send> + Send {
    let id = instance.id.clone();
    service_fn(move |()| {
        let id = id.clone();
        async move { Ok::<_, Infallible>(id) }
    })
}

/// Sends a wave of calls and prints which instance answered each.
async fn report(step: &str, proxy: &Proxy) {
    let mut served = BTreeMap::new();
    for _ in 0..12 {
        match proxy.call(()).await {
            Ok(id) => *served.entry(id).or_insert(0) += 1,
            Err(error) => {
                println!("{step:<36} calls fail: {error}");
                return;
            }
        }
    }
    println!("{step:<36} 12 calls served by {served:?}");
}

/// Calls until a wave is served by exactly `ids`: discovery runs beside the
/// calls, so a change reaches the proxy a moment after etcd has it.
async fn settle(proxy: &Proxy, ids: &[&str]) -> Result<(), BoxError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut seen = Vec::new();
        for _ in 0..ids.len() * 4 {
            if let Ok(id) = proxy.call(()).await {
                seen.push(id);
            }
        }
        seen.sort();
        seen.dedup();
        if seen.iter().map(String::as_str).eq(ids.iter().copied()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("the proxy never settled on {ids:?} (saw {seen:?})").into());
        }
        sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let (etcd_endpoint, _etcd) = etcd().await?;
    let prefix = format!("/tower-mesh-example/{}/users/", std::process::id());
    let client = etcd_client::Client::connect([&etcd_endpoint], None).await?;

    let discover = EtcdDiscover::builder(prefix.as_str())
        .endpoints([etcd_endpoint.clone()])
        .build(endpoint)?;
    let proxy: Proxy = ServiceProxy::builder("users")
        .timeout(Duration::from_secs(2))
        .build(discover)?;
    report("nobody registered", &proxy).await;

    let ttl = Duration::from_secs(5);
    let a = ServiceInstance::new("users-a", "127.0.0.1", 8001);
    let a = Registration::register(client.clone(), &prefix, &a, ttl).await?;
    settle(&proxy, &["users-a"]).await?;
    report("users-a registered", &proxy).await;

    let b = ServiceInstance::new("users-b", "127.0.0.1", 8002);
    let b = Registration::register(client.clone(), &prefix, &b, ttl).await?;
    settle(&proxy, &["users-a", "users-b"]).await?;
    report("users-b registered", &proxy).await;

    a.deregister().await?;
    settle(&proxy, &["users-b"]).await?;
    report("users-a deregistered", &proxy).await;

    // A process that dies stops renewing its lease; dropping the registration
    // also revokes it at once.
    drop(b);
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.call(()).await.is_ok() && Instant::now() < deadline {
        sleep(Duration::from_millis(50)).await;
    }
    report("users-b gone", &proxy).await;
    Ok(())
}

// ===== a throwaway etcd =====

/// The etcd to use, and the process started for it (killed when dropped).
async fn etcd() -> Result<(String, Option<Throwaway>), BoxError> {
    if let Ok(endpoint) = std::env::var("ETCD_ENDPOINT") {
        return Ok((endpoint, None));
    }
    let etcd = Throwaway::start().await?;
    Ok((etcd.endpoint.clone(), Some(etcd)))
}

struct Throwaway {
    endpoint: String,
    dir: PathBuf,
    _child: Child,
}

impl Throwaway {
    async fn start() -> Result<Throwaway, BoxError> {
        let dir = std::env::temp_dir().join(format!("tower-mesh-etcd-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let (client, peer) = (free_port()?, free_port()?);
        let endpoint = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new("etcd")
            .arg("--name=example")
            .arg(format!("--data-dir={}", dir.join("data").display()))
            .arg(format!("--listen-client-urls={endpoint}"))
            .arg(format!("--advertise-client-urls={endpoint}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=example={peer_url}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| {
                format!("cannot start `etcd` ({error}): install it (Debian: etcd-server) or set ETCD_ENDPOINT")
            })?;
        let etcd = Throwaway {
            endpoint,
            dir,
            _child: child,
        };
        etcd.wait_until_serving().await?;
        println!("started a throwaway etcd at {}", etcd.endpoint);
        Ok(etcd)
    }

    async fn wait_until_serving(&self) -> Result<(), BoxError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let probe = async {
                let mut client = etcd_client::Client::connect([&self.endpoint], None).await?;
                client.get("probe", None).await
            };
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), probe).await {
                return Ok(());
            }
            sleep(Duration::from_millis(100)).await;
        }
        Err("the throwaway etcd never served".into())
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
