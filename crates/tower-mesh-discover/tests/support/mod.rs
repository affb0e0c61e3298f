//! Shared by the real-server tests: temporary directories, free ports, finding a
//! server's binary, and following a discovery stream until it shows a set.
#![allow(dead_code, unreachable_pub)]

#[cfg(feature = "dns")]
pub mod dnsmasq;
#[cfg(feature = "etcd")]
pub mod etcd;
#[cfg(feature = "etcd")]
pub mod proxy;

use std::collections::BTreeMap;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use tower::discover::Change;
use tower_mesh_balance::{InstanceKey, ServiceInstance};

/// A directory under the system's temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let unique = format!(
            "tower-mesh-discover-{label}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(unique);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port free for both TCP and UDP right now.
pub fn free_port() -> u16 {
    for _ in 0..100 {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind a tcp port");
        let port = tcp.local_addr().expect("local address").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no loopback port is free for both tcp and udp");
}

/// The path of a server binary, looked for on `PATH` and in the sbin folders; a
/// missing binary fails the test with what to install.
pub fn binary(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let sbin = ["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from);
    let found = std::env::split_paths(&path)
        .chain(sbin)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    found.unwrap_or_else(|| {
        panic!(
            "`{name}` is not installed, and these tests need a real server: \
             install it (Debian/Ubuntu: `apt-get install -y {package}`); CI does"
        )
    })
}

/// Whether this process runs as root (servers then need to be told to stay root).
pub fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status.lines().find_map(|line| line.strip_prefix("Uid:"));
    uid.and_then(|ids| ids.split_whitespace().next()) == Some("0")
}

/// Follows a discovery stream, keeping the instances it has announced.
pub struct Seen<D> {
    discover: D,
    pub instances: BTreeMap<String, ServiceInstance>,
}

impl<D, S, E> Seen<D>
where
    D: Stream<Item = Result<Change<InstanceKey, S>, E>> + Unpin,
    E: std::fmt::Debug,
{
    pub fn new(discover: D) -> Self {
        Seen {
            discover,
            instances: BTreeMap::new(),
        }
    }

    /// The ids announced, sorted.
    pub fn ids(&self) -> Vec<String> {
        self.instances.keys().cloned().collect()
    }

    /// Each announced id with its weight.
    pub fn weights(&self) -> BTreeMap<String, u32> {
        let pairs = self.instances.iter().map(|(id, i)| (id.clone(), i.weight));
        pairs.collect()
    }

    /// Applies changes until `wanted` holds, failing after `within`.
    pub async fn until(
        &mut self,
        what: &str,
        within: Duration,
        wanted: impl Fn(&BTreeMap<String, ServiceInstance>) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + within;
        while !wanted(&self.instances) {
            match tokio::time::timeout_at(deadline, self.discover.next()).await {
                Ok(Some(change)) => self.apply(change.expect("discovery never errors")),
                Ok(None) => panic!("the stream ended before {what}; seen {:?}", self.ids()),
                Err(_) => panic!("no {what} within {within:?}; seen {:?}", self.instances),
            }
        }
    }

    /// Waits until the announced ids are exactly `ids`.
    pub async fn until_ids(&mut self, ids: &[&str], within: Duration) {
        let mut wanted: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
        wanted.sort();
        let what = format!("instances {wanted:?}");
        self.until(&what, within, |seen| seen.keys().eq(wanted.iter()))
            .await;
    }

    /// Fails if the stream announces any change within `quiet`.
    pub async fn no_change_for(&mut self, quiet: Duration) {
        if let Ok(change) = tokio::time::timeout(quiet, self.discover.next()).await {
            let change = change.map(|change| match change.expect("discovery never errors") {
                Change::Insert(key, _) => format!("insert {key}"),
                Change::Remove(key) => format!("remove {key}"),
            });
            panic!("expected no change for {quiet:?}, got {change:?}");
        }
    }

    fn apply(&mut self, change: Change<InstanceKey, S>) {
        match change {
            Change::Insert(key, _) => {
                self.instances
                    .insert(key.id().to_owned(), key.instance().clone());
            }
            Change::Remove(key) => {
                assert!(
                    self.instances.remove(key.id()).is_some(),
                    "removed {key}, which was never inserted"
                );
            }
        }
    }
}

/// A process-wide `metrics` recorder, so tests can read what the sources counted.
#[cfg(feature = "metrics")]
pub mod metered {
    use std::sync::OnceLock;

    use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
    use metrics_util::MetricKind;

    fn snapshotter() -> &'static Snapshotter {
        static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
        SNAPSHOTTER.get_or_init(|| {
            let recorder = DebuggingRecorder::new();
            let snapshotter = recorder.snapshotter();
            recorder
                .install()
                .expect("the only recorder of this test binary");
            snapshotter
        })
    }

    /// Installs the recorder; call it before the sources to measure count.
    pub fn install() {
        snapshotter();
    }

    /// The counter `name` whose labels include every pair of `labels`; 0 if none.
    pub fn counter(name: &str, labels: &[(&str, &str)]) -> u64 {
        let metrics = snapshotter().snapshot().into_vec();
        let found = metrics.into_iter().find(|(key, _, _, _)| {
            let (kind, key) = key.clone().into_parts();
            kind == MetricKind::Counter
                && key.name() == name
                && labels
                    .iter()
                    .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v))
        });
        match found {
            Some((_, _, _, DebugValue::Counter(count))) => count,
            _ => 0,
        }
    }

    /// `tower_mesh_discover_lookups_total` for `target` and `result`.
    pub fn lookups(target: &str, result: &str) -> u64 {
        let labels = [("target", target), ("result", result)];
        counter("tower_mesh_discover_lookups_total", &labels)
    }
}
