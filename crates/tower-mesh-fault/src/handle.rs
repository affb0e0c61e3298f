//! [`FaultHandle`]: the faults in force, changed while traffic flows, and what
//! was injected.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tower_mesh_core::random::{mix, random_seed, unit, GOLDEN_GAMMA};

use crate::config::{AbortKind, DelayKind, FaultConfig};

/// The faults a [`FaultLayer`](crate::FaultLayer) injects, shared by every service
/// the layer makes and every clone of the handle.
///
/// [`set`](Self::set) replaces the faults at once for every request that starts
/// afterwards, so a test or an operator can turn chaos up, down or off while
/// traffic flows. With a seed, the same sequence of requests meets the same
/// faults in every run.
///
/// # Example
///
/// ```
/// use tower_mesh_fault::{AbortKind, FaultConfig, FaultHandle};
///
/// let handle = FaultHandle::with_seed(FaultConfig::none(), 7);
/// handle.set(FaultConfig::builder().abort(100.0, AbortKind::Error).build()?);
/// assert_eq!(handle.config().abort_percent(), 100.0);
/// handle.disable();
/// assert_eq!(handle.config(), FaultConfig::none());
/// # Ok::<(), tower_mesh_core::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct FaultHandle {
    inner: Arc<Inner>,
}

struct Inner {
    config: RwLock<Arc<FaultConfig>>,
    /// SplitMix64 state, advanced atomically so concurrent draws never repeat.
    rng: AtomicU64,
    requests: AtomicU64,
    aborted: AtomicU64,
    delayed: AtomicU64,
}

/// What a [`FaultHandle`] has injected so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct FaultStats {
    /// Requests that went through the layer.
    pub requests: u64,
    /// Requests aborted.
    pub aborted: u64,
    /// Requests delayed.
    pub delayed: u64,
}

/// The faults drawn for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Decision {
    pub(crate) delay: Option<Duration>,
    pub(crate) abort: Option<AbortKind>,
}

impl FaultHandle {
    /// A handle injecting `config`, seeded differently in every process.
    pub fn new(config: FaultConfig) -> Self {
        FaultHandle::with_seed(config, random_seed())
    }

    /// A handle injecting `config`, with reproducible draws.
    pub fn with_seed(config: FaultConfig, seed: u64) -> Self {
        let inner = Inner {
            config: RwLock::new(Arc::new(config)),
            rng: AtomicU64::new(seed),
            requests: AtomicU64::new(0),
            aborted: AtomicU64::new(0),
            delayed: AtomicU64::new(0),
        };
        FaultHandle {
            inner: Arc::new(inner),
        }
    }

    /// Injects `config` from now on.
    pub fn set(&self, config: FaultConfig) {
        tracing::debug!(
            abort_percent = config.abort_percent(),
            delay_percent = config.delay_percent(),
            "faults changed"
        );
        *self
            .inner
            .config
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
    }

    /// Injects nothing from now on.
    pub fn disable(&self) {
        self.set(FaultConfig::none());
    }

    /// The faults in force.
    pub fn config(&self) -> FaultConfig {
        (*self.current()).clone()
    }

    /// What was injected so far.
    pub fn stats(&self) -> FaultStats {
        FaultStats {
            requests: self.inner.requests.load(Ordering::Relaxed),
            aborted: self.inner.aborted.load(Ordering::Relaxed),
            delayed: self.inner.delayed.load(Ordering::Relaxed),
        }
    }

    fn current(&self) -> Arc<FaultConfig> {
        self.inner
            .config
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Draws the faults of one request and counts them.
    pub(crate) fn decide(&self) -> Decision {
        let config = self.current();
        self.inner.requests.fetch_add(1, Ordering::Relaxed);
        let delay = config
            .delay
            .filter(|&(percent, _)| self.roll(percent))
            .map(|(_, kind)| self.delay_for(kind));
        let abort = config
            .abort
            .filter(|&(percent, _)| self.roll(percent))
            .map(|(_, kind)| kind);
        if delay.is_some() {
            self.inner.delayed.fetch_add(1, Ordering::Relaxed);
        }
        if abort.is_some() {
            self.inner.aborted.fetch_add(1, Ordering::Relaxed);
        }
        Decision { delay, abort }
    }

    /// Uniform in `[0, 1)`, from the shared generator.
    fn draw(&self) -> f64 {
        let state = self.inner.rng.fetch_add(GOLDEN_GAMMA, Ordering::Relaxed);
        unit(mix(state.wrapping_add(GOLDEN_GAMMA)))
    }

    /// `true` with probability `percent / 100`.
    fn roll(&self, percent: f64) -> bool {
        percent > 0.0 && self.draw() * 100.0 < percent
    }

    fn delay_for(&self, kind: DelayKind) -> Duration {
        match kind {
            DelayKind::Fixed(delay) => delay,
            DelayKind::Uniform { min, max } => min + (max - min).mul_f64(self.draw()),
            DelayKind::Exponential { mean, max } => {
                let factor = -(1.0 - self.draw()).ln();
                Duration::try_from_secs_f64(mean.as_secs_f64() * factor)
                    .unwrap_or(max)
                    .min(max)
            }
        }
    }
}

impl fmt::Debug for FaultHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultHandle")
            .field("config", &self.current())
            .field("stats", &self.stats())
            .finish()
    }
}
