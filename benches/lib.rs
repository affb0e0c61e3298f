//! Support shared by the benchmarks in this package: a no-op service, a minimal
//! executor, and an allocator that counts allocations.
//!
//! The benchmarks poll services by hand instead of inside a tokio runtime, so the
//! time measured is the middleware's and not the scheduler's.

use std::alloc::{GlobalAlloc, Layout, System};
use std::convert::Infallible;
use std::future::{Future, Ready};
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

use tower::Service;

// ===== Noop =====

/// A service that answers every request at once with the request itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct Noop;

impl Service<u64> for Noop {
    type Response = u64;
    type Error = Infallible;
    type Future = Ready<Result<u64, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: u64) -> Self::Future {
        std::future::ready(Ok(request))
    }
}

// ===== block_on =====

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

thread_local! {
    static WAKER: Waker = Waker::from(Arc::new(Unpark(thread::current())));
}

/// Runs `future` to completion on this thread, parking while it is pending.
///
/// The first poll uses a waker that does nothing, so a future that is ready at
/// once costs one poll; only a pending future pays for a real waker.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    if let Poll::Ready(output) = future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        return output;
    }
    WAKER.with(|waker| {
        let mut cx = Context::from_waker(waker);
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
            thread::park();
        }
    })
}

/// Waits for `service` to be ready, then calls it and waits for the response.
/// Returns whether both steps succeeded.
pub fn ready_and_call<S: Service<u64>>(service: &mut S, request: u64) -> bool {
    let ready = block_on(std::future::poll_fn(|cx| service.poll_ready(cx)));
    ready.is_ok() && block_on(service.call(request)).is_ok()
}

// ===== CountingAllocator =====

/// The system allocator, counting every allocation it makes.
///
/// Install it in a benchmark binary with `#[global_allocator]`, then read
/// [`allocations`](CountingAllocator::allocations) before and after the code to check.
#[derive(Debug)]
pub struct CountingAllocator {
    allocations: AtomicU64,
}

impl CountingAllocator {
    /// A counter at zero.
    pub const fn new() -> Self {
        CountingAllocator {
            allocations: AtomicU64::new(0),
        }
    }

    /// Allocations made so far, on every thread.
    pub fn allocations(&self) -> u64 {
        self.allocations.load(Ordering::Relaxed)
    }

    /// Allocations per call over `calls` runs of `call`.
    pub fn per_call(&self, calls: u64, mut call: impl FnMut()) -> f64 {
        let before = self.allocations();
        for _ in 0..calls {
            call();
        }
        (self.allocations() - before) as f64 / calls as f64
    }
}

impl Default for CountingAllocator {
    fn default() -> Self {
        CountingAllocator::new()
    }
}

// SAFETY: every method forwards to the system allocator unchanged; counting
// touches only an atomic and never the memory handed out.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.allocations.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through `alloc` above, with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.allocations.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `dealloc`; `new_size` is checked by the caller.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
