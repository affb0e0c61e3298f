//! How an endpoint is chosen: [`LoadBalancerStrategy`] and the [`SelectEndpoint`]
//! trait for strategies of your own.
//!
//! Every strategy chooses among *available* endpoints: healthy (or every endpoint,
//! while the panic threshold applies) and ready to take a call. The built-in ones
//! cost, per pick:
//!
//! | strategy | cost | notes |
//! |---|---|---|
//! | [`RoundRobin`](LoadBalancerStrategy::RoundRobin) | O(1) | a stable order; unavailable endpoints are passed over, never reshuffled |
//! | [`Random`](LoadBalancerStrategy::Random) | O(1) expected | uniform over available endpoints, from a seeded generator |
//! | [`Weighted`](LoadBalancerStrategy::Weighted) | O(log n) | smooth and deterministic: earliest deadline first over `weight` |
//! | [`LeastConnections`](LoadBalancerStrategy::LeastConnections) | O(n) | exact: the fewest calls in flight, ties taken in turn |
//! | [`PeakEwma`](LoadBalancerStrategy::PeakEwma) | O(1) | power of two random choices over a peak-EWMA latency times load |
//! | [`ConsistentHash`](LoadBalancerStrategy::ConsistentHash) | O(1) | Maglev table over a key taken from the request |
//!
//! `Weighted` and `ConsistentHash` rebuild their tables after a membership change,
//! on the next pick: O(n log n) for the schedule, and for the Maglev table (about
//! 101 slots per endpoint, at most 262,147 slots) about O(m log m) in its size `m`.
//! Health changes never rebuild them.

mod maglev;
mod weighted;

use crate::rand::SplitMix64;

pub(crate) use maglev::Maglev;
pub(crate) use weighted::Deadlines;

/// How a [`LoadBalancer`](crate::LoadBalancer) or a
/// [`ServiceRegistry`](crate::ServiceRegistry) chooses among available instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LoadBalancerStrategy {
    /// Each available instance in turn, in a stable order. An instance that turns
    /// unhealthy is passed over and takes its turn again when it recovers; nothing is
    /// reshuffled, and the first instance is the first picked.
    #[default]
    RoundRobin,
    /// Uniformly at random, from a seeded generator.
    Random,
    /// Smooth weighted round robin: over any run of picks, each instance gets its
    /// share of `weight` (exactly, over a whole cycle of the weights' sum), and
    /// picks of a heavy instance are spread out rather than bunched.
    Weighted,
    /// The instance with the fewest calls in flight; ties go in turn.
    LeastConnections,
    /// Power of two choices: of two random instances, the one whose peak-EWMA
    /// latency, scaled by its calls in flight, is lower.
    PeakEwma,
    /// The instance owning the request's key on a Maglev table, so a key keeps its
    /// instance and few keys move when instances come and go. The key comes from
    /// [`LoadBalancerBuilder::hash_key`](crate::LoadBalancerBuilder::hash_key); an
    /// unavailable owner hands the key to a stand-in until it is back.
    ConsistentHash,
}

impl LoadBalancerStrategy {
    /// A short lowercase name, as used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            LoadBalancerStrategy::RoundRobin => "round_robin",
            LoadBalancerStrategy::Random => "random",
            LoadBalancerStrategy::Weighted => "weighted",
            LoadBalancerStrategy::LeastConnections => "least_connections",
            LoadBalancerStrategy::PeakEwma => "peak_ewma",
            LoadBalancerStrategy::ConsistentHash => "consistent_hash",
        }
    }
}

/// What a strategy sees of the endpoint set: one index per endpoint, `0..len()`.
///
/// Indexes are stable while membership does not change; after an insert or a
/// removal, an endpoint may have moved to another index.
pub trait EndpointView {
    /// How many endpoints there are, available or not.
    fn len(&self) -> usize;

    /// `true` when there are no endpoints.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the endpoint may be picked now: healthy (or the panic threshold
    /// applies) and ready.
    fn is_available(&self, index: usize) -> bool;

    /// The endpoint's weight (at least 1).
    fn weight(&self, index: usize) -> u32;

    /// Calls sent to the endpoint that have not finished yet.
    fn in_flight(&self, index: usize) -> u64;

    /// The endpoint's peak-EWMA latency in nanoseconds, multiplied by its calls in
    /// flight plus one: lower is better.
    fn load_cost(&self, index: usize) -> f64;

    /// A hash of the endpoint's key, the same in every process.
    fn key_hash(&self, index: usize) -> u64;
}

/// A strategy of your own: choose an endpoint for a request.
///
/// `select` sees the request, so a strategy can route on its content (a tenant,
/// a header, a shard key). Return the index of an available endpoint; an index that
/// is out of range or unavailable is replaced by the next available one in index
/// order, and `None` fails the call with
/// [`NoHealthyInstanceError`](crate::NoHealthyInstanceError).
///
/// # Example
///
/// ```
/// use tower_mesh_balance::{EndpointView, SelectEndpoint};
///
/// /// Sends even requests to the lowest available index, odd ones to the highest.
/// struct EvenOdd;
///
/// impl SelectEndpoint<u32> for EvenOdd {
///     fn select(&mut self, request: &u32, endpoints: &dyn EndpointView) -> Option<usize> {
///         let mut available = (0..endpoints.len()).filter(|&i| endpoints.is_available(i));
///         if request % 2 == 0 { available.next() } else { available.last() }
///     }
/// }
/// ```
pub trait SelectEndpoint<Req>: Send {
    /// Chooses an endpoint for `request`.
    fn select(&mut self, request: &Req, endpoints: &dyn EndpointView) -> Option<usize>;

    /// Called after endpoints were inserted or removed, before the next `select`.
    fn membership_changed(&mut self) {}
}

// ===== the built-in strategies =====

/// Attempts at random before a random strategy falls back to a scan.
const RANDOM_TRIES: usize = 8;

/// The state of a built-in strategy.
#[derive(Debug)]
pub(crate) struct Picker {
    strategy: LoadBalancerStrategy,
    rng: SplitMix64,
    cursor: usize,
    deadlines: Deadlines,
    maglev: Maglev,
}

impl Picker {
    pub(crate) fn new(strategy: LoadBalancerStrategy, seed: u64) -> Self {
        Picker {
            strategy,
            rng: SplitMix64::new(seed),
            cursor: 0,
            deadlines: Deadlines::default(),
            maglev: Maglev::default(),
        }
    }

    pub(crate) fn strategy(&self) -> LoadBalancerStrategy {
        self.strategy
    }

    /// Endpoints were inserted or removed: tables are rebuilt on the next pick.
    pub(crate) fn membership_changed(&mut self) {
        self.deadlines.invalidate();
        self.maglev.invalidate();
    }

    /// Picks an available endpoint; `key` is the request's hash, if it has one.
    pub(crate) fn pick<V: EndpointView + ?Sized>(
        &mut self,
        view: &V,
        key: Option<u64>,
    ) -> Option<usize> {
        if view.is_empty() {
            return None;
        }
        match self.strategy {
            LoadBalancerStrategy::RoundRobin => self.round_robin(view),
            LoadBalancerStrategy::Random => self.random(view),
            LoadBalancerStrategy::Weighted => self.deadlines.pick(view),
            LoadBalancerStrategy::LeastConnections => self.least_connections(view),
            LoadBalancerStrategy::PeakEwma => self.peak_ewma(view),
            LoadBalancerStrategy::ConsistentHash => match key {
                Some(hash) => self.maglev.pick(view, hash),
                None => self.round_robin(view),
            },
        }
    }

    fn round_robin<V: EndpointView + ?Sized>(&mut self, view: &V) -> Option<usize> {
        let len = view.len();
        let start = self.cursor % len;
        let index = first_available(view, start)?;
        self.cursor = index + 1;
        Some(index)
    }

    fn random<V: EndpointView + ?Sized>(&mut self, view: &V) -> Option<usize> {
        let len = view.len();
        for _ in 0..RANDOM_TRIES {
            let index = self.rng.below(len);
            if view.is_available(index) {
                return Some(index);
            }
        }
        first_available(view, self.rng.below(len))
    }

    fn least_connections<V: EndpointView + ?Sized>(&mut self, view: &V) -> Option<usize> {
        let len = view.len();
        let start = self.cursor % len;
        let mut best: Option<(u64, usize)> = None;
        for step in 0..len {
            let index = (start + step) % len;
            if !view.is_available(index) {
                continue;
            }
            let load = view.in_flight(index);
            if best.is_none_or(|(fewest, _)| load < fewest) {
                best = Some((load, index));
            }
        }
        let (_, index) = best?;
        self.cursor = index + 1;
        Some(index)
    }

    fn peak_ewma<V: EndpointView + ?Sized>(&mut self, view: &V) -> Option<usize> {
        let first = self.random(view)?;
        let len = view.len();
        if len == 1 {
            return Some(first);
        }
        // A second, different candidate: an offset in 1..len never lands on `first`.
        let second = (first + 1 + self.rng.below(len - 1)) % len;
        if !view.is_available(second) {
            return Some(first);
        }
        if view.load_cost(second) < view.load_cost(first) {
            Some(second)
        } else {
            Some(first)
        }
    }
}

/// The first available index at or after `start`, wrapping around.
pub(crate) fn first_available<V: EndpointView + ?Sized>(view: &V, start: usize) -> Option<usize> {
    let len = view.len();
    (0..len)
        .map(|step| (start + step) % len)
        .find(|&index| view.is_available(index))
}
