//! [`ResponseFuture`]: a balanced call, which reports its outcome to the endpoint's
//! load counters, latency estimate and breaker.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_mesh_breaker::Permit;
use tower_mesh_core::{BoxError, Classify};

use super::stats::EndpointStats;
use crate::NoHealthyInstanceError;

pin_project! {
    /// The response future of [`LoadBalancer`](crate::LoadBalancer).
    ///
    /// # Cancel safety
    ///
    /// Dropping it before it completes ends the call's count in flight and records
    /// no outcome in the endpoint's breaker (a half-open probe slot is given back).
    #[derive(Debug)]
    pub struct ResponseFuture<F, C> {
        #[pin]
        state: State<F, C>,
    }
}

pin_project! {
    #[project = StateProj]
    #[derive(Debug)]
    enum State<F, C> {
        Called {
            #[pin]
            future: F,
            record: Option<CallRecord<C>>,
        },
        Failed {
            error: NoHealthyInstanceError,
        },
    }
}

/// What a finished call reports, and where.
#[derive(Debug)]
pub(crate) struct CallRecord<C> {
    pub(crate) stats: Arc<EndpointStats>,
    pub(crate) permit: Option<Permit>,
    pub(crate) classifier: Option<C>,
    pub(crate) started: Option<Instant>,
    pub(crate) track_latency: bool,
}

impl<C> CallRecord<C> {
    fn finish<T, E>(mut self, result: Result<&T, &E>)
    where
        C: Classify<T, E>,
    {
        let now = self.started.map(|_| Instant::now());
        let latency = match (self.started, now) {
            (Some(started), Some(now)) => now.saturating_duration_since(started),
            _ => Duration::ZERO,
        };
        if let (true, Some(now)) = (self.track_latency, now) {
            self.stats.observe(latency, now);
        }
        if let (Some(permit), Some(classifier)) = (self.permit.take(), self.classifier.take()) {
            permit.record(classifier.classify(result, latency), latency);
        }
    }
}

impl<C> Drop for CallRecord<C> {
    fn drop(&mut self) {
        self.stats.call_finished();
    }
}

impl<F, C> ResponseFuture<F, C> {
    pub(crate) fn called(future: F, record: CallRecord<C>) -> Self {
        let state = State::Called {
            future,
            record: Some(record),
        };
        ResponseFuture { state }
    }

    pub(crate) fn failed(error: NoHealthyInstanceError) -> Self {
        ResponseFuture {
            state: State::Failed { error },
        }
    }
}

impl<F, C, T, E> Future for ResponseFuture<F, C>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    C: Classify<T, E>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Called { future, record } => {
                let result = ready!(future.poll(cx));
                if let Some(record) = record.take() {
                    record.finish(result.as_ref());
                }
                Poll::Ready(result.map_err(Into::into))
            }
            StateProj::Failed { error } => Poll::Ready(Err(error.clone().into())),
        }
    }
}
