//! A layer that counts the calls passing through it, for [`ProxyStats`](super::ProxyStats).

use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

/// Counts every call made through the services it makes, on a counter that
/// lives as long as the program, so that clones count no references.
#[derive(Debug, Clone)]
pub(crate) struct CountLayer {
    counter: &'static AtomicU64,
}

impl CountLayer {
    pub(crate) fn new(counter: &'static AtomicU64) -> Self {
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
    counter: &'static AtomicU64,
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
        self.counter.fetch_add(1, Ordering::Relaxed);
        self.inner.call(request)
    }
}
