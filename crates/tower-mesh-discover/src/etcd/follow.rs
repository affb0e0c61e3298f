//! The loop behind [`EtcdDiscover`](super::EtcdDiscover): read every record under
//! the prefix, watch from the next revision, and start again where needed.

use std::fmt;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions, WatchOptions, WatchResponse, WatchStream};
use futures_util::stream::{self, StreamExt};
use tokio::time::{sleep, timeout};

use super::records::Records;
use crate::changes::{InstanceSet, Snapshots};
use crate::telemetry::Telemetry;

/// Where the client comes from.
#[derive(Clone)]
pub(crate) enum Connect {
    /// Connect to these endpoints with these options, when first polled.
    Endpoints(Vec<String>, ConnectOptions),
    /// Use a client the caller made.
    Client(Box<Client>),
}

/// How long to wait between attempts after errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Backoff {
    pub(crate) initial: Duration,
    pub(crate) max: Duration,
}

impl Backoff {
    /// The wait after the `failures`th failure in a row: doubling from `initial`
    /// up to `max`.
    pub(crate) fn after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(20);
        self.initial.saturating_mul(1 << doublings).min(self.max)
    }
}

/// What went wrong in one step; the loop waits and tries again.
#[derive(Debug)]
enum Trouble {
    Etcd(etcd_client::Error),
    TimedOut(&'static str),
    WatchEnded,
    WatchCanceled(String),
}

impl fmt::Display for Trouble {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trouble::Etcd(error) => write!(f, "{error}"),
            Trouble::TimedOut(what) => write!(f, "{what} timed out"),
            Trouble::WatchEnded => f.write_str("the watch stream ended"),
            Trouble::WatchCanceled(reason) => write!(f, "the watch was canceled: {reason}"),
        }
    }
}

impl From<etcd_client::Error> for Trouble {
    fn from(error: etcd_client::Error) -> Self {
        Trouble::Etcd(error)
    }
}

/// The state the loop carries.
pub(crate) struct Follow {
    pub(crate) connect: Connect,
    pub(crate) client: Option<Client>,
    pub(crate) records: Records,
    /// The revision every record reflects; `None` until read (or after a
    /// compaction made the watch impossible), when every record is read afresh.
    pub(crate) revision: Option<i64>,
    pub(crate) watch: Option<WatchStream>,
    pub(crate) read_before: bool,
    pub(crate) request_timeout: Duration,
    pub(crate) backoff: Backoff,
    pub(crate) failures: u32,
    pub(crate) telemetry: Telemetry,
}

impl Follow {
    /// The wanted sets: one after the first read, then one per change.
    pub(crate) fn snapshots(self) -> Snapshots {
        let steps = stream::unfold(self, |mut follow| async move {
            let wanted = follow.next_wanted().await;
            Some((wanted, follow))
        });
        steps.boxed()
    }

    async fn next_wanted(&mut self) -> InstanceSet {
        loop {
            match self.step().await {
                Ok(true) => return self.records.wanted(),
                Ok(false) => {}
                Err(trouble) => self.recover(trouble).await,
            }
        }
    }

    /// One read or one watch message; `true` when the records changed.
    async fn step(&mut self) -> Result<bool, Trouble> {
        let client = self.client().await?;
        if self.revision.is_none() {
            self.read_all(client).await?;
            return Ok(true);
        }
        if self.watch.is_none() {
            let watch = self.open_watch(client).await?;
            self.watch = Some(watch);
        }
        let Some(watch) = self.watch.as_mut() else {
            return Err(Trouble::WatchEnded);
        };
        match watch.message().await? {
            Some(response) => self.apply(response),
            None => Err(Trouble::WatchEnded),
        }
    }

    /// Waits out an error; the watch is reopened (or the records read again) on
    /// the next step, from the last revision applied.
    async fn recover(&mut self, trouble: Trouble) {
        self.watch = None;
        self.failures += 1;
        self.telemetry.error();
        let (prefix, failures) = (self.records.prefix(), self.failures);
        let retry_in = self.backoff.after(failures);
        tracing::warn!(
            %prefix, error = %trouble, failures, ?retry_in,
            "etcd discovery interrupted; keeping the last known instances"
        );
        sleep(retry_in).await;
    }

    async fn client(&mut self) -> Result<Client, Trouble> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let client = match &self.connect {
            Connect::Client(client) => Client::clone(client),
            Connect::Endpoints(endpoints, options) => {
                let connecting = Client::connect(endpoints, Some(options.clone()));
                let connected = timeout(self.request_timeout, connecting).await;
                connected.map_err(|_| Trouble::TimedOut("connecting"))??
            }
        };
        Ok(self.client.insert(client).clone())
    }

    // TODO(a prefix whose records outgrow one gRPC message): read in pages, each
    // at the revision of the first.
    async fn read_all(&mut self, mut client: Client) -> Result<(), Trouble> {
        let prefix = self.records.prefix().to_owned();
        let options = GetOptions::new().with_prefix();
        let reading = client.get(prefix.as_str(), Some(options));
        let response = timeout(self.request_timeout, reading).await;
        let response = response.map_err(|_| Trouble::TimedOut("reading the records"))??;
        let revision = response.header().map_or(0, |header| header.revision());
        let pairs = response.kvs().iter().map(|kv| (kv.key(), kv.value()));
        self.records.replace_all(pairs);
        if !std::mem::replace(&mut self.read_before, true) {
            self.telemetry.resync("start");
        }
        self.revision = Some(revision);
        self.failures = 0;
        tracing::debug!(%prefix, revision, records = response.kvs().len(), "etcd records read");
        Ok(())
    }

    async fn open_watch(&mut self, mut client: Client) -> Result<WatchStream, Trouble> {
        let from = self.revision.unwrap_or(0) + 1;
        let prefix = self.records.prefix().to_owned();
        let options = WatchOptions::new().with_prefix().with_start_revision(from);
        let opening = client.watch(prefix.as_str(), Some(options));
        let watch = timeout(self.request_timeout, opening).await;
        let watch = watch.map_err(|_| Trouble::TimedOut("opening the watch"))??;
        tracing::debug!(%prefix, from, "etcd watch opened");
        Ok(watch)
    }

    /// Applies one watch response; `true` when the records changed.
    fn apply(&mut self, response: WatchResponse) -> Result<bool, Trouble> {
        if response.compact_revision() > 0 {
            let prefix = self.records.prefix();
            let compacted = response.compact_revision();
            tracing::debug!(
                %prefix, compacted,
                "watched revision compacted; reading every record again"
            );
            self.telemetry.resync("compacted");
            self.revision = None;
            self.watch = None;
            return Ok(false);
        }
        if response.canceled() {
            return Err(Trouble::WatchCanceled(response.cancel_reason().to_owned()));
        }
        self.failures = 0;
        let mut changed = false;
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            // A deleted key comes back with version 0 (and a put always with a
            // version of at least 1), which tells the two apart without
            // `Event::event_type`, which panics on a type it does not know.
            changed |= if kv.version() == 0 {
                self.records.delete(kv.key())
            } else {
                self.records.put(kv.key(), kv.value())
            };
            self.revision = self.revision.max(Some(kv.mod_revision()));
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_its_maximum() {
        let backoff = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let waits: Vec<u128> = (1..=6).map(|n| backoff.after(n).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
    }
}
