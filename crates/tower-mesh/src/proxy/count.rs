//! A layer that counts the calls passing through it, for [`ProxyStats`](super::ProxyStats).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

/// Counts every call made through the services it makes, on a counter that
/// lives as long as the program, so that clones count no references.
#[derive(Debug, Clone)]
pub(crate) struct CountLayer {
    counter: &'static Striped,
}

impl CountLayer {
    pub(crate) fn new(counter: &'static Striped) -> Self {
        CountLayer { counter }
    }
}

impl<S> Layer<S> for CountLayer {
    type Service = Count<S>;

    fn layer(&self, inner: S) -> Count<S> {
        Count {
            inner,
            counter: self.counter,
        }
    }
}

/// A service that adds one to its counter per call. Made by [`CountLayer`].
#[derive(Debug, Clone)]
pub(crate) struct Count<S> {
    inner: S,
    counter: &'static Striped,
}

impl<S, Req> Service<Req> for Count<S>
where
    S: Service<Req>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> S::Future {
        self.counter.add_one();
        self.inner.call(request)
    }
}

// ===== Striped =====

/// Cells a [`Striped`] counter spreads over.
const STRIPES: usize = 8;

/// A counter spread over cache lines, one per thread (modulo [`STRIPES`]), so
/// that threads counting at once do not fight over one line.
#[derive(Debug, Default)]
pub(crate) struct Striped {
    cells: [Cell; STRIPES],
}

#[derive(Debug, Default)]
#[repr(align(64))]
struct Cell(AtomicU64);

impl Striped {
    pub(crate) fn add_one(&self) {
        self.cells[stripe()].0.fetch_add(1, Ordering::Relaxed);
    }

    /// The count so far (each cell read once, so not a snapshot while others
    /// count).
    pub(crate) fn sum(&self) -> u64 {
        self.cells
            .iter()
            .map(|cell| cell.0.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

/// This thread's cell: threads take the cells in turn as they first count.
fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    STRIPE.with(|stripe| *stripe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_many_threads_add_up() {
        let counter: &'static Striped = Box::leak(Box::default());
        let threads: Vec<_> = (0..12)
            .map(|_| std::thread::spawn(move || (0..1_000).for_each(|_| counter.add_one())))
            .collect();
        threads
            .into_iter()
            .for_each(|thread| thread.join().unwrap());
        assert_eq!(counter.sum(), 12_000);
    }
}
