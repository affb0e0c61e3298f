//! [`NoHealthyInstanceError`], the error of a call no instance can take.

use std::fmt;
use std::time::Duration;

/// No instance could take the call: the set is empty, or every instance is
/// unhealthy and the panic threshold does not apply.
///
/// [`LoadBalancer`](crate::LoadBalancer) fails calls with this error (boxed in a
/// [`BoxError`](tower_mesh_core::BoxError)) instead of waiting forever; find it
/// with `downcast_ref`. [`ServiceRegistry::get_instance`](crate::ServiceRegistry::get_instance)
/// returns it directly.
///
/// ```
/// use tower_mesh_balance::NoHealthyInstanceError;
/// # fn check(error: &tower_mesh_core::BoxError) {
/// if let Some(none) = error.downcast_ref::<NoHealthyInstanceError>() {
///     eprintln!("{} instances known, none healthy", none.known_instances());
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoHealthyInstanceError {
    known: usize,
    waited: Duration,
}

impl NoHealthyInstanceError {
    pub(crate) fn new(known: usize, waited: Duration) -> Self {
        NoHealthyInstanceError { known, waited }
    }

    /// How many instances were known, healthy or not, when the call failed.
    pub fn known_instances(&self) -> usize {
        self.known
    }

    /// How long the call waited for an instance before failing (zero when the
    /// balancer fails fast).
    pub fn waited(&self) -> Duration {
        self.waited
    }
}

impl fmt::Display for NoHealthyInstanceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.known == 0 {
            f.write_str("no instance is known")?;
        } else {
            write!(f, "none of {} known instances is healthy", self.known)?;
        }
        if !self.waited.is_zero() {
            write!(f, " after waiting {:?}", self.waited)?;
        }
        Ok(())
    }
}

impl std::error::Error for NoHealthyInstanceError {}

/// A [`SharedBalancer`](crate::SharedBalancer) cannot be used any more: an
/// earlier call panicked while it held the balancer, so its state cannot be
/// trusted. Every later call fails with this error; build a new balancer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BalancerPanickedError;

impl fmt::Display for BalancerPanickedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the shared balancer is unusable: an earlier call panicked while holding it")
    }
}

impl std::error::Error for BalancerPanickedError {}
