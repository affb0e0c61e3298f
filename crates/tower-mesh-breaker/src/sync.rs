//! The synchronisation primitives the breaker is built on, swapped for loom's
//! under `cfg(tower_mesh_loom)` so the model checker can explore every interleaving.

#[cfg(not(tower_mesh_loom))]
pub(crate) use std::sync::{
    atomic::{AtomicU64, AtomicU8, Ordering},
    Arc, Mutex, MutexGuard, PoisonError,
};

#[cfg(tower_mesh_loom)]
pub(crate) use loom::sync::{
    atomic::{AtomicU64, AtomicU8, Ordering},
    Arc, Mutex, MutexGuard,
};
#[cfg(tower_mesh_loom)]
pub(crate) use std::sync::PoisonError;

/// Locks `mutex`, recovering the data if a panicking thread poisoned it: the
/// breaker's invariants hold between statements, so a poisoned lock is still sound.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
