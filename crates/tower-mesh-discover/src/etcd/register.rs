//! [`Registration`]: an instance written under a key prefix and kept there by a
//! lease, for as long as the process keeps it alive.

use std::fmt;
use std::time::Duration;

use etcd_client::{Client, LeaseKeepAliveStream, LeaseKeeper, PutOptions};
use tokio::task::JoinHandle;
use tokio::time::sleep;
use tower_mesh_balance::ServiceInstance;
use tower_mesh_core::{BoxError, ConfigError};

use crate::key::instance_key;
use crate::record::to_record;

/// An instance published under an etcd key prefix for every
/// [`EtcdDiscover`](super::EtcdDiscover) on that prefix to find.
///
/// The record lives under a lease that a background task keeps alive. When the
/// process dies the keep-alives stop and etcd deletes the record once the lease's
/// time to live runs out, so the instance leaves every balancer without anyone
/// deregistering it. Should the lease be lost anyway (etcd forgot it, or the
/// keep-alives could not get through in time), the task writes the record again
/// under a new lease.
///
/// [`deregister`](Self::deregister) revokes the lease, which deletes the record at
/// once. Dropping a `Registration` stops the keep-alives and revokes the lease in
/// the background when a Tokio runtime is still running; otherwise the record
/// goes when the lease expires.
///
/// # Example
///
/// ```no_run
/// use std::time::Duration;
/// use tower_mesh_balance::ServiceInstance;
/// use tower_mesh_discover::Registration;
///
/// # #[tokio::main] async fn main() -> Result<(), tower_mesh_core::BoxError> {
/// let client = etcd_client::Client::connect(["http://127.0.0.1:2379"], None).await?;
/// let me = ServiceInstance::new("users-1", "10.0.0.7", 8080).with_weight(2);
/// let ttl = Duration::from_secs(10);
/// let registration = Registration::register(client, "/services/users/", &me, ttl).await?;
/// // ... serve ...
/// registration.deregister().await?;
/// # Ok(()) }
/// ```
pub struct Registration {
    key: String,
    client: Client,
    keeper: JoinHandle<()>,
    lease: tokio::sync::watch::Receiver<i64>,
    revoked: bool,
}

impl Registration {
    /// Writes `instance` at `prefix` + its id, under a lease of `ttl` (whole
    /// seconds, at least one; etcd may round it up to its minimum), and keeps the
    /// lease alive in a background task. Call it within a Tokio runtime.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the instance is invalid or `ttl` is under a second,
    /// and an [`etcd_client::Error`] when the lease or the record cannot be
    /// written; both are `downcast_ref` targets of the [`BoxError`].
    pub async fn register(
        mut client: Client,
        prefix: &str,
        instance: &ServiceInstance,
        ttl: Duration,
    ) -> Result<Registration, BoxError> {
        instance_key(instance.clone())?;
        let ttl_seconds = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        if ttl_seconds < 1 {
            return Err(
                ConfigError::new("ttl", format!("must be at least 1 s, got {ttl:?}")).into(),
            );
        }
        let key = format!("{prefix}{}", instance.id);
        let record = to_record(instance);
        let lease = publish(&mut client, &key, &record, ttl_seconds).await?;
        tracing::debug!(%key, lease, "instance registered in etcd");

        let (lease_sender, lease) = tokio::sync::watch::channel(lease);
        let keep = KeepAlive {
            client: client.clone(),
            key: key.clone(),
            record,
            ttl_seconds,
            lease: lease_sender,
        };
        let keeper = tokio::spawn(keep.run());
        Ok(Registration {
            key,
            client,
            keeper,
            lease,
            revoked: false,
        })
    }

    /// The key the record is written at.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The id of the lease the record lives under now (it changes when the
    /// lease had to be granted again).
    pub fn lease_id(&self) -> i64 {
        *self.lease.borrow()
    }

    /// Stops the keep-alives and revokes the lease, deleting the record now.
    ///
    /// # Errors
    ///
    /// The [`etcd_client::Error`] of the revocation; the record then goes when
    /// the lease expires.
    pub async fn deregister(mut self) -> Result<(), etcd_client::Error> {
        self.keeper.abort();
        self.revoked = true;
        let lease = self.lease_id();
        self.client.lease_revoke(lease).await?;
        tracing::debug!(key = %self.key, lease, "instance deregistered from etcd");
        Ok(())
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.keeper.abort();
        if self.revoked {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut client = self.client.clone();
        let (key, lease) = (self.key.clone(), self.lease_id());
        runtime.spawn(async move {
            if let Err(error) = client.lease_revoke(lease).await {
                tracing::debug!(
                    %key, lease, %error,
                    "could not revoke a dropped registration's lease; it will expire"
                );
            }
        });
    }
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("key", &self.key)
            .field("lease_id", &self.lease_id())
            .finish_non_exhaustive()
    }
}

/// Grants a lease and writes the record under it; returns the lease id.
async fn publish(
    client: &mut Client,
    key: &str,
    record: &str,
    ttl_seconds: i64,
) -> Result<i64, etcd_client::Error> {
    let lease = client.lease_grant(ttl_seconds, None).await?.id();
    let options = PutOptions::new().with_lease(lease);
    client.put(key, record, Some(options)).await?;
    Ok(lease)
}

/// The background task of a [`Registration`].
struct KeepAlive {
    client: Client,
    key: String,
    record: String,
    ttl_seconds: i64,
    lease: tokio::sync::watch::Sender<i64>,
}

impl KeepAlive {
    /// Renews the lease a few times per time to live; after an error, waits a
    /// beat and opens a new keep-alive stream, or publishes again when the lease
    /// is gone.
    async fn run(mut self) {
        let beat = Duration::from_millis(u64::try_from(self.ttl_seconds).unwrap_or(1) * 1000 / 3);
        loop {
            let lease = *self.lease.borrow();
            let ended = match self.client.lease_keep_alive(lease).await {
                Ok((keeper, responses)) => self.renew(keeper, responses, beat).await,
                Err(error) => Renewal::Failed(error.to_string()),
            };
            match ended {
                Renewal::Expired => self.publish_again().await,
                Renewal::Failed(error) => {
                    tracing::warn!(
                        key = %self.key, lease, %error,
                        "etcd lease keep-alive failed; retrying"
                    );
                }
            }
            sleep(beat).await;
        }
    }

    /// Sends a keep-alive every `beat` until one fails or the lease is gone.
    async fn renew(
        &self,
        mut keeper: LeaseKeeper,
        mut responses: LeaseKeepAliveStream,
        beat: Duration,
    ) -> Renewal {
        loop {
            if let Err(error) = keeper.keep_alive().await {
                return Renewal::Failed(error.to_string());
            }
            match responses.message().await {
                Ok(Some(response)) if response.ttl() <= 0 => return Renewal::Expired,
                Ok(Some(_)) => {}
                Ok(None) => return Renewal::Failed("the keep-alive stream ended".to_owned()),
                Err(error) => return Renewal::Failed(error.to_string()),
            }
            sleep(beat).await;
        }
    }

    async fn publish_again(&mut self) {
        let key = self.key.clone();
        match publish(&mut self.client, &key, &self.record, self.ttl_seconds).await {
            Ok(lease) => {
                tracing::warn!(%key, lease, "etcd lease was lost; instance registered again");
                self.lease.send_replace(lease);
            }
            Err(error) => {
                tracing::warn!(%key, %error, "etcd lease was lost; registering again failed")
            }
        }
    }
}

enum Renewal {
    Expired,
    Failed(String),
}
