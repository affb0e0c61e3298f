//! The engine every source shares: a stream of wanted instance sets in, the
//! tower [`Change`]s that move a balancer from one set to the next out.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::task::{Context, Poll};

use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use tower::discover::Change;
use tower_mesh_balance::{InstanceKey, MakeEndpoint, ServiceInstance};

use crate::key::instance_key;

/// The instances a source wants a balancer to have, by id.
pub(crate) type InstanceSet = BTreeMap<String, ServiceInstance>;

/// What a source produces: each item replaces the whole wanted set.
pub(crate) type Snapshots = BoxStream<'static, InstanceSet>;

/// Diffs each wanted set against the endpoints already announced, and turns the
/// difference into inserts (new or changed instances) and removes.
pub(crate) struct Changes<M> {
    snapshots: Option<Snapshots>,
    live: BTreeMap<String, InstanceKey>,
    pending: VecDeque<Pending>,
    make_endpoint: M,
}

enum Pending {
    Insert(InstanceKey),
    Remove(InstanceKey),
}

impl<M: MakeEndpoint> Changes<M> {
    pub(crate) fn new(snapshots: Snapshots, make_endpoint: M) -> Self {
        Changes {
            snapshots: Some(snapshots),
            live: BTreeMap::new(),
            pending: VecDeque::new(),
            make_endpoint,
        }
    }

    /// The next change; `Ready(None)` once the source has ended and every change
    /// it implied was handed out.
    pub(crate) fn poll_change(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Change<InstanceKey, M::Service>>> {
        loop {
            if let Some(pending) = self.pending.pop_front() {
                return Poll::Ready(Some(self.change(pending)));
            }
            let Some(snapshots) = self.snapshots.as_mut() else {
                return Poll::Ready(None);
            };
            match snapshots.poll_next_unpin(cx) {
                Poll::Ready(Some(wanted)) => self.apply(wanted),
                Poll::Ready(None) => self.snapshots = None,
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn change(&mut self, pending: Pending) -> Change<InstanceKey, M::Service> {
        match pending {
            Pending::Insert(key) => {
                let service = self.make_endpoint.make_endpoint(key.instance());
                Change::Insert(key, service)
            }
            Pending::Remove(key) => Change::Remove(key),
        }
    }

    /// Queues the changes from the live set to `wanted`: removes first, then
    /// inserts for instances that are new or differ in any field.
    fn apply(&mut self, mut wanted: InstanceSet) {
        let gone: Vec<String> = self
            .live
            .keys()
            .filter(|id| !wanted.contains_key(*id))
            .cloned()
            .collect();
        for id in gone {
            if let Some(key) = self.live.remove(&id) {
                tracing::debug!(instance = %key, "instance gone");
                self.pending.push_back(Pending::Remove(key));
            }
        }

        wanted
            .retain(|id, instance| self.live.get(id).map(InstanceKey::instance) != Some(instance));
        for (id, instance) in wanted {
            match instance_key(instance) {
                Ok(key) => {
                    let address = key.instance().address();
                    tracing::debug!(instance = %key, %address, "instance discovered");
                    self.live.insert(id, key.clone());
                    self.pending.push_back(Pending::Insert(key));
                }
                Err(error) => tracing::warn!(instance = %id, %error, "skipping invalid instance"),
            }
        }
    }
}

impl<M> fmt::Debug for Changes<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Changes")
            .field("live", &self.live.len())
            .field("queued", &self.pending.len())
            .field("ended", &self.snapshots.is_none())
            .finish_non_exhaustive()
    }
}

/// Implements `Stream` (and so `tower::discover::Discover`) for a source type
/// whose `changes` field is a [`Changes`].
macro_rules! discover_stream {
    ($source:ident) => {
        impl<M> futures_util::Stream for $source<M>
        where
            M: tower_mesh_balance::MakeEndpoint + Unpin,
        {
            type Item = Result<
                tower::discover::Change<tower_mesh_balance::InstanceKey, M::Service>,
                std::convert::Infallible,
            >;

            fn poll_next(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Option<Self::Item>> {
                self.get_mut()
                    .changes
                    .poll_change(cx)
                    .map(|change| change.map(Ok))
            }
        }

        impl<M> std::fmt::Debug for $source<M> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($source))
                    .field("changes", &self.changes)
                    .finish()
            }
        }
    };
}

pub(crate) use discover_stream;

#[cfg(test)]
mod tests {
    use futures_util::stream;
    use futures_util::task::noop_waker_ref;

    use super::*;

    fn set(instances: &[ServiceInstance]) -> InstanceSet {
        let pairs = instances.iter().map(|i| (i.id.clone(), i.clone()));
        pairs.collect()
    }

    /// Every change the snapshots imply, as `+id:weight` and `-id`.
    fn changes(snapshots: Vec<InstanceSet>) -> Vec<String> {
        let snapshots = stream::iter(snapshots).boxed();
        let mut changes = Changes::new(snapshots, |i: &ServiceInstance| i.port);
        let mut cx = Context::from_waker(noop_waker_ref());
        let mut seen = Vec::new();
        while let Poll::Ready(Some(change)) = changes.poll_change(&mut cx) {
            seen.push(match change {
                Change::Insert(key, port) => format!("+{}:{}@{port}", key.id(), key.weight()),
                Change::Remove(key) => format!("-{}", key.id()),
            });
        }
        seen
    }

    #[test]
    fn the_first_set_is_inserted_whole() {
        let a = ServiceInstance::new("a", "h", 1);
        let b = ServiceInstance::new("b", "h", 2);
        assert_eq!(changes(vec![set(&[a, b])]), ["+a:1@1", "+b:1@2"]);
    }

    #[test]
    fn later_sets_are_diffed_into_removes_then_inserts() {
        let a = ServiceInstance::new("a", "h", 1);
        let b = ServiceInstance::new("b", "h", 2);
        let c = ServiceInstance::new("c", "h", 3);
        let heavier_a = a.clone().with_weight(5);
        let sets = vec![
            set(&[a.clone(), b.clone()]),
            set(&[a.clone(), b.clone()]),
            set(&[heavier_a, c]),
        ];
        assert_eq!(
            changes(sets),
            ["+a:1@1", "+b:1@2", "-b", "+a:5@1", "+c:1@3"]
        );
    }

    #[test]
    fn an_invalid_instance_is_skipped_and_the_rest_kept() {
        let good = ServiceInstance::new("good", "h", 1);
        let bad = ServiceInstance::new("bad", "", 2);
        assert_eq!(changes(vec![set(&[good, bad])]), ["+good:1@1"]);
    }

    #[test]
    fn an_empty_set_removes_everything() {
        let a = ServiceInstance::new("a", "h", 1);
        assert_eq!(changes(vec![set(&[a]), set(&[])]), ["+a:1@1", "-a"]);
    }
}
