use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_mesh_core::{BoxError, Classify};

use crate::{CircuitOpenError, Permit};

pin_project! {
    /// The response future of [`CircuitBreakerService`](super::CircuitBreakerService).
    ///
    /// # Cancel safety
    ///
    /// Dropping it before it completes records no outcome and frees the call's
    /// half-open probe slot, if it held one.
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
        Admitted {
            #[pin]
            future: F,
            permit: Permit,
            classifier: C,
            started: Option<Instant>,
        },
        Rejected {
            error: CircuitOpenError,
        },
    }
}

impl<F, C> ResponseFuture<F, C> {
    #[inline]
    pub(super) fn admitted(
        future: F,
        permit: Permit,
        classifier: C,
        started: Option<Instant>,
    ) -> Self {
        let state = State::Admitted {
            future,
            permit,
            classifier,
            started,
        };
        ResponseFuture { state }
    }

    pub(super) fn rejected(error: CircuitOpenError) -> Self {
        ResponseFuture {
            state: State::Rejected { error },
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
            StateProj::Admitted {
                future,
                permit,
                classifier,
                started,
            } => {
                let result = ready!(future.poll(cx));
                let latency = started.map_or(Duration::ZERO, |started| started.elapsed());
                permit.record_once(classifier.classify(result.as_ref(), latency), latency);
                Poll::Ready(result.map_err(Into::into))
            }
            // Cloning (an `Arc` and two words) keeps a repeated poll from panicking.
            StateProj::Rejected { error } => Poll::Ready(Err(error.clone().into())),
        }
    }
}
