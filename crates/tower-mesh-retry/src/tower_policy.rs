//! [`RetryPolicy`] as a [`tower::retry::Policy`], for stacks built on
//! `tower::retry::Retry`.
//!
//! tower calls [`clone_request`](Policy::clone_request) on the service's policy
//! before each first attempt, then clones the policy into the response future and
//! calls [`retry`](Policy::retry) and `clone_request` on that clone. The policy
//! uses the first call of a request to start its clocks and pay into the budget,
//! and the clone to count the request's retries.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower::retry::Policy;
use tower_mesh_core::Classify;

use crate::retryable::{ReplayRequest, Retryable};
use crate::{RetryBudget, RetryPolicy};

impl<Req, Res, E, C, R, K> Policy<Req, Res, E> for RetryPolicy<C, R, K>
where
    E: 'static,
    C: Classify<Res, E>,
    R: Retryable<Res, E>,
    K: ReplayRequest<Req>,
{
    type Future = Delay;

    fn retry(&mut self, _request: &mut Req, result: &mut Result<Res, E>) -> Option<Delay> {
        let delay = self.after_attempt(result.as_ref(), true)?;
        Some(Delay::new(delay, self.unsent_refund()))
    }

    fn clone_request(&mut self, request: &Req) -> Option<Req> {
        let needs_latency = self.needs_latency();
        if self.retries() == 0 {
            self.begin_request(needs_latency);
        } else {
            self.begin_retry(needs_latency);
        }
        self.replay(request)
    }
}

pin_project! {
    /// The wait before a retry made by `tower::retry::Retry` with a
    /// [`RetryPolicy`].
    ///
    /// # Cancel safety
    ///
    /// Dropping it cancels the timer, and gives the retry it was waiting for
    /// back to the budget.
    pub struct Delay {
        #[pin]
        sleep: Option<Sleep>,
        // The budget and slot the retry was counted in, until the wait is over.
        refund: Option<(RetryBudget, u64)>,
    }

    impl PinnedDrop for Delay {
        fn drop(this: Pin<&mut Self>) {
            if let Some((budget, slot)) = this.project().refund.take() {
                budget.refund(slot);
            }
        }
    }
}

impl Delay {
    fn new(delay: Duration, refund: Option<(RetryBudget, u64)>) -> Delay {
        let sleep = (!delay.is_zero()).then(|| tokio::time::sleep(delay));
        Delay { sleep, refund }
    }
}

impl Future for Delay {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if let Some(sleep) = this.sleep.as_pin_mut() {
            ready!(sleep.poll(cx));
        }
        // The wait is over: the retry goes out, and stays counted.
        *this.refund = None;
        Poll::Ready(())
    }
}

impl fmt::Debug for Delay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let deadline = self.sleep.as_ref().map(Sleep::deadline);
        f.debug_struct("Delay").field("until", &deadline).finish()
    }
}
