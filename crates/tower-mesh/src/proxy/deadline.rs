//! The per-attempt timeout of a proxy: one timer for all of a proxy's attempts.
//!
//! Every attempt through one proxy has the same timeout, so attempts reach their
//! deadlines in the order they started. [`AttemptDeadlines`] keeps the pending
//! attempts in that order, in a queue under a lock, and one watcher task sleeps
//! until the oldest one's deadline. Starting and finishing an attempt is a push
//! and a mark in the queue; only the watcher registers a runtime timer, and only
//! when the oldest attempt changes.
//!
//! An attempt future registers on its first `Pending` poll, with its waker. When
//! the watcher finds an attempt past its deadline it wakes it, and the attempt,
//! seeing the clock past its deadline, fails with [`Elapsed`]. A finished or
//! dropped attempt leaves the queue at once (its waker is dropped); its place in
//! the order is skipped when the watcher or the next attempt reaches it.
//!
//! The queue lives as long as the program, as the proxy's breaker does, so that
//! neither the attempt stack nor the attempt futures count references to it. The
//! proxy holds its [`DeadlinesOwner`]; when the proxy is dropped, the watcher ends
//! once the attempts still queued are done, and the queue's storage is freed.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::sync::Notify;
use tokio::time::Instant;
use tower::timeout::error::Elapsed;
use tower_layer::Layer;
use tower_mesh_core::BoxError;
use tower_service::Service;

/// The pending attempts of one proxy, in deadline order.
#[derive(Debug)]
pub(crate) struct AttemptDeadlines {
    timeout: Duration,
    queue: Mutex<Queue>,
    /// Wakes the watcher when the queue stops being empty.
    watcher: Notify,
}

#[derive(Debug, Default)]
struct Queue {
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Attempts in deadline order; entries whose slot moved on to a later
    /// generation are stale and skipped.
    order: VecDeque<Entry>,
    live: usize,
    watcher_parked: bool,
    watcher_started: bool,
    /// The proxy is gone: the watcher ends once nothing is queued.
    closed: bool,
}

#[derive(Debug)]
struct Slot {
    generation: u32,
    waker: Option<Waker>,
}

/// An attempt in the deadline order.
#[derive(Debug, Clone, Copy)]
struct Entry {
    ticket: Ticket,
    deadline: Instant,
}

/// An attempt's place in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ticket {
    slot: u32,
    generation: u32,
}

impl AttemptDeadlines {
    /// A queue for attempts of `timeout`, kept for the rest of the program (a
    /// few hundred bytes once its owner is dropped), and its owner.
    fn new(timeout: Duration) -> (&'static Self, DeadlinesOwner) {
        let deadlines: &'static Self = Box::leak(Box::new(AttemptDeadlines {
            timeout,
            queue: Mutex::new(Queue::default()),
            watcher: Notify::new(),
        }));
        (deadlines, DeadlinesOwner(deadlines))
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues an attempt due at `deadline`, to be woken through `waker`.
    fn register(&'static self, deadline: Instant, waker: &Waker) -> Ticket {
        let mut queue = self.lock();
        let ticket = queue.insert(deadline, waker.clone());
        let start_watcher = !std::mem::replace(&mut queue.watcher_started, true);
        if !start_watcher && std::mem::take(&mut queue.watcher_parked) {
            self.watcher.notify_one();
        }
        drop(queue);
        if start_watcher {
            tokio::spawn(watch(self));
        }
        ticket
    }

    /// Keeps the waker of a queued attempt current: a future may move to another
    /// task between polls. Attempts are rarely polled twice while pending, so the
    /// lock here is rare too.
    fn update(&self, ticket: Ticket, waker: &Waker) {
        let mut queue = self.lock();
        let Some(slot) = queue.slot_mut(ticket) else {
            return;
        };
        match &slot.waker {
            Some(known) if known.will_wake(waker) => {}
            _ => slot.waker = Some(waker.clone()),
        }
    }

    /// Takes a finished or dropped attempt out of the queue.
    fn remove(&self, ticket: Ticket) {
        let mut queue = self.lock();
        let waker = queue.remove(ticket);
        // The last attempt of a dropped proxy lets a parked watcher end.
        if queue.closed && queue.live == 0 && std::mem::take(&mut queue.watcher_parked) {
            self.watcher.notify_one();
        }
        drop(queue);
        drop(waker);
    }
}

/// Owns a proxy's [`AttemptDeadlines`]: dropping it lets the watcher end and
/// the queue's storage go, once the attempts still queued are done.
#[derive(Debug)]
pub(crate) struct DeadlinesOwner(&'static AttemptDeadlines);

impl Drop for DeadlinesOwner {
    fn drop(&mut self) {
        let mut queue = self.0.lock();
        queue.closed = true;
        if !queue.watcher_started {
            queue.release();
        } else if std::mem::take(&mut queue.watcher_parked) {
            self.0.watcher.notify_one();
        }
    }
}

impl Queue {
    fn insert(&mut self, deadline: Instant, waker: Waker) -> Ticket {
        self.skip_stale();
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    waker: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let entry = &mut self.slots[slot as usize];
        entry.waker = Some(waker);
        let ticket = Ticket {
            slot,
            generation: entry.generation,
        };
        self.enqueue(Entry { ticket, deadline });
        self.live += 1;
        self.compact();
        ticket
    }

    /// Puts `entry` in deadline order. Attempts are queued at their first poll
    /// but due from their call, so one may arrive just behind a later deadline:
    /// the search from the back is almost always zero or one step.
    fn enqueue(&mut self, entry: Entry) {
        let mut position = self.order.len();
        while position > 0 && self.order[position - 1].deadline > entry.deadline {
            position -= 1;
        }
        self.order.insert(position, entry);
    }

    fn slot_mut(&mut self, ticket: Ticket) -> Option<&mut Slot> {
        self.slots
            .get_mut(ticket.slot as usize)
            .filter(|slot| slot.generation == ticket.generation)
    }

    fn remove(&mut self, ticket: Ticket) -> Option<Waker> {
        let slot = self.slot_mut(ticket)?;
        slot.generation = slot.generation.wrapping_add(1);
        let waker = slot.waker.take();
        self.free.push(ticket.slot);
        self.live -= 1;
        waker
    }

    fn is_live(&self, ticket: Ticket) -> bool {
        self.slots[ticket.slot as usize].generation == ticket.generation
    }

    /// Frees the storage of a closed, empty queue.
    fn release(&mut self) {
        if self.live == 0 {
            self.slots = Vec::new();
            self.free = Vec::new();
            self.order = VecDeque::new();
        }
    }

    /// Drops the stale entries at the front of the order.
    fn skip_stale(&mut self) {
        while let Some(front) = self.order.front() {
            if self.is_live(front.ticket) {
                break;
            }
            self.order.pop_front();
        }
    }

    /// Rebuilds the order without its stale entries once they outnumber the live
    /// ones: a long attempt at the front keeps the entries behind it from being
    /// skipped, and this bounds them.
    fn compact(&mut self) {
        if self.order.len() <= 2 * self.live + 64 {
            return;
        }
        let mut order = std::mem::take(&mut self.order);
        order.retain(|entry| self.is_live(entry.ticket));
        self.order = order;
    }

    /// Takes the wakers of the live attempts due by `now`; returns the next
    /// deadline.
    fn expire(&mut self, now: Instant, due: &mut Vec<Waker>) -> Option<Instant> {
        loop {
            self.skip_stale();
            let front = *self.order.front()?;
            if front.deadline > now {
                return Some(front.deadline);
            }
            // Woken, the attempt fails itself and leaves the queue; until then
            // it is out of the order, so that it is not woken twice.
            self.order.pop_front();
            if let Some(waker) = self.slots[front.ticket.slot as usize].waker.take() {
                due.push(waker);
            }
        }
    }
}

/// The watcher: sleeps until the oldest attempt's deadline, wakes the attempts
/// that are due, and parks while none is queued. Ends once its proxy is gone and
/// nothing is queued.
async fn watch(deadlines: &'static AttemptDeadlines) {
    let _restart = RestartOnDrop(deadlines);
    let mut due = Vec::new();
    loop {
        let next = {
            let mut queue = deadlines.lock();
            let next = queue.expire(Instant::now(), &mut due);
            if queue.closed && queue.live == 0 {
                return;
            }
            queue.watcher_parked = next.is_none();
            next
        };
        due.drain(..).for_each(Waker::wake);
        match next {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => deadlines.watcher.notified().await,
        }
    }
}

/// Marks the watcher gone when it ends or is dropped, so that the next attempt
/// starts another: after its runtime shut down, or after its proxy was dropped
/// while a call outlived it.
struct RestartOnDrop(&'static AttemptDeadlines);

impl Drop for RestartOnDrop {
    fn drop(&mut self) {
        let mut queue = self.0.lock();
        queue.watcher_started = false;
        queue.watcher_parked = false;
        if queue.closed {
            queue.release();
        }
    }
}

// ===== the layer =====

/// Bounds each attempt to the timeout of its [`AttemptDeadlines`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttemptTimeoutLayer {
    deadlines: &'static AttemptDeadlines,
}

impl AttemptTimeoutLayer {
    /// The layer, and the owner of its queue, to keep as long as the layer's
    /// services are used.
    pub(crate) fn new(timeout: Duration) -> (Self, DeadlinesOwner) {
        let (deadlines, owner) = AttemptDeadlines::new(timeout);
        (AttemptTimeoutLayer { deadlines }, owner)
    }
}

impl<S> Layer<S> for AttemptTimeoutLayer {
    type Service = AttemptTimeout<S>;

    fn layer(&self, inner: S) -> AttemptTimeout<S> {
        AttemptTimeout {
            inner,
            deadlines: self.deadlines,
        }
    }
}

/// The service made by [`AttemptTimeoutLayer`].
#[derive(Debug, Clone)]
pub(crate) struct AttemptTimeout<S> {
    inner: S,
    deadlines: &'static AttemptDeadlines,
}

impl<S, Req> Service<Req> for AttemptTimeout<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = AttemptFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        AttemptFuture {
            inner: self.inner.call(request),
            deadline: Instant::now() + self.deadlines.timeout,
            deadlines: self.deadlines,
            queued: None,
        }
    }
}

pin_project! {
    /// The response future of [`AttemptTimeout`].
    pub(crate) struct AttemptFuture<F> {
        #[pin]
        inner: F,
        deadline: Instant,
        deadlines: &'static AttemptDeadlines,
        queued: Option<Ticket>,
    }

    impl<F> PinnedDrop for AttemptFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(ticket) = this.queued.take() {
                this.deadlines.remove(ticket);
            }
        }
    }
}

impl<F, T, E> Future for AttemptFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = match (this.inner.poll(cx), *this.queued) {
            (Poll::Ready(result), _) => result.map_err(Into::into),
            // The first pending poll comes right after the call: queue it
            // without reading the clock again.
            (Poll::Pending, None) => {
                *this.queued = Some(this.deadlines.register(*this.deadline, cx.waker()));
                return Poll::Pending;
            }
            (Poll::Pending, Some(_)) if Instant::now() >= *this.deadline => {
                Err(Elapsed::new().into())
            }
            (Poll::Pending, Some(ticket)) => {
                this.deadlines.update(ticket, cx.waker());
                return Poll::Pending;
            }
        };
        if let Some(ticket) = this.queued.take() {
            this.deadlines.remove(ticket);
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use std::future::pending;
    use std::sync::Arc;

    use tower::ServiceExt;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(1);

    /// Never answers, except the request `0`, which it answers at once.
    #[derive(Clone)]
    struct Hang;

    impl Service<u32> for Hang {
        type Response = u32;
        type Error = BoxError;
        type Future = Pin<Box<dyn Future<Output = Result<u32, BoxError>> + Send>>;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, n: u32) -> Self::Future {
            Box::pin(async move {
                if n != 0 {
                    pending::<()>().await;
                }
                Ok(n)
            })
        }
    }

    fn hanging(layer: &AttemptTimeoutLayer) -> AttemptTimeout<Hang> {
        layer.layer(Hang)
    }

    fn live(layer: &AttemptTimeoutLayer) -> (usize, usize) {
        let queue = layer.deadlines.lock();
        (queue.live, queue.order.len())
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_that_never_answers_fails_at_its_deadline() {
        let (layer, _owner) = AttemptTimeoutLayer::new(TIMEOUT);
        let started = Instant::now();
        let error = hanging(&layer).oneshot(1).await.unwrap_err();
        assert!(error.is::<Elapsed>(), "{error}");
        assert_eq!(started.elapsed(), TIMEOUT);
        assert_eq!(live(&layer), (0, 0), "the timed-out attempt left the queue");
    }

    #[tokio::test(start_paused = true)]
    async fn hung_attempts_started_apart_each_fail_a_timeout_after_their_start() {
        let (layer, _owner) = AttemptTimeoutLayer::new(TIMEOUT);
        let started = Instant::now();
        let mut attempts = Vec::new();
        for n in 1..=50u32 {
            let service = hanging(&layer);
            attempts.push(tokio::spawn(async move {
                let error = service.oneshot(n).await.unwrap_err();
                assert!(error.is::<Elapsed>());
                Instant::now()
            }));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for (n, attempt) in (0u32..).zip(attempts) {
            let ended = attempt.await.unwrap();
            assert_eq!(ended - started, TIMEOUT + Duration::from_millis(10) * n);
        }
        assert_eq!(live(&layer), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn answered_and_dropped_attempts_leave_the_queue() {
        let (layer, _owner) = AttemptTimeoutLayer::new(TIMEOUT);
        // A pending attempt, polled once and dropped.
        let mut dropped = tokio_test_like_poll(hanging(&layer).oneshot(1)).await;
        assert_eq!(live(&layer).0, 1);
        drop(dropped.take());
        assert_eq!(live(&layer).0, 0);
        // Attempts that answer at once are never queued.
        for _ in 0..100 {
            assert_eq!(hanging(&layer).oneshot(0).await.unwrap(), 0);
        }
        assert_eq!(live(&layer).0, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_attempt_at_the_front_keeps_the_queue_bounded() {
        let (layer, _owner) = AttemptTimeoutLayer::new(TIMEOUT);
        let _front = tokio_test_like_poll(hanging(&layer).oneshot(1)).await;
        for _ in 0..10_000 {
            let attempt = tokio_test_like_poll(hanging(&layer).oneshot(2)).await;
            drop(attempt);
        }
        let (live_attempts, queued) = live(&layer);
        assert_eq!(live_attempts, 1);
        assert!(queued <= 2 * live_attempts + 65, "{queued} entries queued");
    }

    #[test]
    fn the_watcher_ends_and_the_queue_is_freed_when_the_owner_goes() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let alive = || {
                tokio::runtime::Handle::current()
                    .metrics()
                    .num_alive_tasks()
            };
            let (layer, owner) = AttemptTimeoutLayer::new(TIMEOUT);
            let attempt = tokio_test_like_poll(hanging(&layer).oneshot(1)).await;
            assert_eq!(alive(), 1, "the watcher");
            drop(owner);
            tokio::task::yield_now().await;
            assert_eq!(alive(), 1, "the watcher waits for the attempt still queued");
            drop(attempt);
            // The watcher wakes at the dropped attempt's deadline and ends.
            tokio::time::sleep(TIMEOUT * 2).await;
            assert_eq!(alive(), 0);
            assert_eq!(layer.deadlines.lock().slots.capacity(), 0, "storage freed");
        });
    }

    #[tokio::test(start_paused = true)]
    async fn an_attempt_outliving_its_owner_still_times_out() {
        let (layer, owner) = AttemptTimeoutLayer::new(TIMEOUT);
        drop(owner);
        let started = Instant::now();
        let error = hanging(&layer).oneshot(1).await.unwrap_err();
        assert!(error.is::<Elapsed>(), "{error}");
        assert_eq!(started.elapsed(), TIMEOUT);
        tokio::task::yield_now().await;
        let alive = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks();
        assert_eq!(alive, 0, "the watcher ended with the last attempt");
    }

    #[test]
    fn a_layer_outliving_its_runtime_still_times_attempts_out_on_the_next() {
        let (layer, _owner) = AttemptTimeoutLayer::new(TIMEOUT);
        for _ in 0..2 {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap();
            // A time limit turns a missing watcher into a failure, not a hang.
            let attempt = async {
                let started = Instant::now();
                let attempt = hanging(&layer).oneshot(1);
                let result = tokio::time::timeout(TIMEOUT * 10, attempt).await;
                (result, started.elapsed())
            };
            let (result, elapsed) = runtime.block_on(attempt);
            assert_eq!(elapsed, TIMEOUT, "timed out by the layer");
            let error = result.unwrap().unwrap_err();
            assert!(error.is::<Elapsed>(), "{error}");
        }
    }

    // ===== the queue against a model =====

    /// Counts its wake-ups.
    struct CountWakes(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert { due_in_ms: u16 },
        Remove { pick: usize },
        Expire { at_ms: u16 },
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            3 => (0..2_000u16).prop_map(|due_in_ms| Op::Insert { due_in_ms }),
            2 => any::<usize>().prop_map(|pick| Op::Remove { pick }),
            1 => (0..3_000u16).prop_map(|at_ms| Op::Expire { at_ms }),
        ]
    }

    /// A queued attempt as the model sees it.
    struct Modelled {
        ticket: Ticket,
        deadline: Instant,
        wakes: Arc<CountWakes>,
        expired: bool,
    }

    proptest::proptest! {
        /// Any mix of queued, finished and expired attempts: each live attempt is
        /// woken exactly once, when the clock passes its deadline, and never after
        /// it left; the order stays bounded by the live attempts.
        #[test]
        fn the_queue_wakes_each_due_attempt_once(ops in proptest::collection::vec(op(), 1..300)) {
            let base = Instant::now();
            let mut queue = Queue::default();
            let mut model: Vec<Modelled> = Vec::new();
            let mut left: Vec<Arc<CountWakes>> = Vec::new();
            for op in ops {
                match op {
                    Op::Insert { due_in_ms } => {
                        let deadline = base + Duration::from_millis(u64::from(due_in_ms));
                        let wakes = Arc::new(CountWakes(Default::default()));
                        let ticket = queue.insert(deadline, Waker::from(wakes.clone()));
                        model.push(Modelled { ticket, deadline, wakes, expired: false });
                    }
                    Op::Remove { pick } if !model.is_empty() => {
                        let gone = model.swap_remove(pick % model.len());
                        drop(queue.remove(gone.ticket));
                        left.push(gone.wakes);
                    }
                    Op::Remove { .. } => {}
                    Op::Expire { at_ms } => {
                        let now = base + Duration::from_millis(u64::from(at_ms));
                        let mut due = Vec::new();
                        queue.expire(now, &mut due);
                        due.into_iter().for_each(Waker::wake);
                        for attempt in &mut model {
                            attempt.expired |= attempt.deadline <= now;
                        }
                    }
                }
                proptest::prop_assert_eq!(queue.live, model.len());
                proptest::prop_assert!(queue.order.len() <= 2 * queue.live + 65);
                for attempt in &model {
                    let woken = attempt.wakes.0.load(std::sync::atomic::Ordering::SeqCst);
                    proptest::prop_assert_eq!(woken, usize::from(attempt.expired));
                }
            }
            for gone in left {
                proptest::prop_assert!(gone.0.load(std::sync::atomic::Ordering::SeqCst) <= 1);
            }
        }
    }

    /// Polls `future` once, so that a pending attempt is queued, and hands it
    /// back to be dropped or kept.
    async fn tokio_test_like_poll<F: Future + Unpin>(mut future: F) -> Option<F> {
        let polled = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut future).poll(cx))).await;
        assert!(polled.is_pending(), "the attempt answered");
        Some(future)
    }
}
