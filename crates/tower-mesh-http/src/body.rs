//! [`ReplayBody`], a request body kept in memory so it can be sent again, and
//! [`BufferRequestBodyLayer`], which makes one from any body up to a size limit.

use std::fmt;
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Request};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_mesh_core::{BoxError, ConfigError};
use tower_service::Service;

// ===== ReplayBody =====

pin_project! {
    /// A request body that is either held in memory, and so can be sent again, or
    /// streams on from an inner body, and so is sent once.
    ///
    /// Made by [`BufferRequestBody`], or from bytes with `From`.
    pub struct ReplayBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Buffered {
            data: Option<Bytes>,
            trailers: Option<HeaderMap>,
            original: Bytes,
            original_trailers: Option<HeaderMap>,
        },
        Streaming {
            prefix: Option<Bytes>,
            #[pin]
            rest: B,
        },
    }
}

impl<B> ReplayBody<B> {
    fn buffered_with(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        let kind = Kind::Buffered {
            data: (!data.is_empty()).then(|| data.clone()),
            trailers: trailers.clone(),
            original: data,
            original_trailers: trailers,
        };
        ReplayBody { kind }
    }

    fn streaming(prefix: Bytes, rest: B) -> Self {
        let prefix = (!prefix.is_empty()).then_some(prefix);
        ReplayBody {
            kind: Kind::Streaming { prefix, rest },
        }
    }

    /// The whole body, when it is held in memory.
    pub fn buffered(&self) -> Option<&Bytes> {
        match &self.kind {
            Kind::Buffered { original, .. } => Some(original),
            Kind::Streaming { .. } => None,
        }
    }

    /// A fresh copy of a buffered body, trailers included, from its start.
    pub(crate) fn replay(&self) -> Option<Self> {
        match &self.kind {
            Kind::Buffered {
                original,
                original_trailers,
                ..
            } => Some(Self::buffered_with(
                original.clone(),
                original_trailers.clone(),
            )),
            Kind::Streaming { .. } => None,
        }
    }
}

impl<B> From<Bytes> for ReplayBody<B> {
    fn from(data: Bytes) -> Self {
        ReplayBody::buffered_with(data, None)
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project().kind.project() {
            KindProj::Buffered { data, trailers, .. } => {
                let frame = match data.take() {
                    Some(data) => Some(Frame::data(data)),
                    None => trailers.take().map(Frame::trailers),
                };
                Poll::Ready(frame.map(Ok))
            }
            KindProj::Streaming { prefix, rest } => {
                if let Some(prefix) = prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(prefix))));
                }
                let frame = ready!(rest.poll_frame(cx));
                Poll::Ready(frame.map(|frame| match frame {
                    Ok(frame) => {
                        Ok(frame.map_data(|mut data| data.copy_to_bytes(data.remaining())))
                    }
                    Err(error) => Err(error.into()),
                }))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Buffered { data, trailers, .. } => data.is_none() && trailers.is_none(),
            Kind::Streaming { prefix, rest } => prefix.is_none() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Buffered { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |data| data.len() as u64))
            }
            Kind::Streaming { prefix, rest } => {
                let extra = prefix.as_ref().map_or(0, |prefix| prefix.len() as u64);
                let inner = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + extra);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + extra);
                }
                hint
            }
        }
    }
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Buffered { original, .. } => f
                .debug_struct("ReplayBody::Buffered")
                .field("len", &original.len())
                .finish(),
            Kind::Streaming { .. } => f.debug_struct("ReplayBody::Streaming").finish(),
        }
    }
}

// ===== BufferRequestBodyLayer =====

/// Reads request bodies into memory, up to a limit, so a retry can send them again.
///
/// A body that ends within `limit` bytes becomes a buffered [`ReplayBody`], which
/// [`HttpReplay`](crate::HttpReplay) can copy. A longer body is not held back: the
/// bytes read so far and the rest of the stream are sent on once, as a streaming
/// `ReplayBody`, and that request is not retried (a `trace!` event says why).
/// Place this layer outside the retry layer.
///
/// Bodies must be `Unpin` (hyper's `Incoming`, `Full`, and boxed bodies are).
///
/// # Example
///
/// ```
/// use tower::ServiceBuilder;
/// use tower_mesh_http::BufferRequestBodyLayer;
///
/// let layer = BufferRequestBodyLayer::new(64 * 1024)?;
/// # let _ = ServiceBuilder::new().layer(layer);
/// # Ok::<(), tower_mesh_core::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct BufferRequestBodyLayer {
    limit: usize,
}

impl BufferRequestBodyLayer {
    /// Buffers bodies of at most `limit` bytes.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for `limit` when it is zero.
    pub fn new(limit: usize) -> Result<Self, ConfigError> {
        if limit == 0 {
            return Err(ConfigError::new("limit", "must be at least one byte"));
        }
        Ok(BufferRequestBodyLayer { limit })
    }
}

impl<S> Layer<S> for BufferRequestBodyLayer {
    type Service = BufferRequestBody<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BufferRequestBody {
            inner,
            limit: self.limit,
        }
    }
}

/// The service of [`BufferRequestBodyLayer`].
#[derive(Debug, Clone)]
pub struct BufferRequestBody<S> {
    inner: S,
    limit: usize,
}

impl<S> BufferRequestBody<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for BufferRequestBody<S>
where
    S: Service<Request<ReplayBody<B>>> + Clone,
    S::Error: Into<BoxError>,
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BufferFuture<S, B>;

    /// Waits for the inner service; its readiness is kept for the buffered call.
    ///
    /// - `Pending` while the inner service is not ready.
    /// - Errors with the inner service's error.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The ready service goes with the future; this one keeps a fresh clone.
        let fresh = self.inner.clone();
        let ready = mem::replace(&mut self.inner, fresh);
        let (parts, body) = request.into_parts();
        BufferFuture {
            state: State::Reading {
                parts: Some(parts),
                body: Some(body),
                read: BytesMut::new(),
                trailers: None,
                limit: self.limit,
                service: Some(ready),
            },
        }
    }
}

pin_project! {
    /// The response future of [`BufferRequestBody`]: reads the body, then calls.
    pub struct BufferFuture<S, B>
    where
        S: Service<Request<ReplayBody<B>>>,
    {
        #[pin]
        state: State<S, B, S::Future>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B, F> {
        Reading {
            parts: Option<http::request::Parts>,
            body: Option<B>,
            read: BytesMut,
            trailers: Option<HeaderMap>,
            limit: usize,
            service: Option<S>,
        },
        Calling {
            #[pin]
            future: F,
        },
    }
}

/// Where reading a body stopped.
enum Read {
    /// The body ended within the limit.
    Whole,
    /// The body passed the limit; this chunk is the first byte over it.
    Overflowed(Bytes),
}

/// Reads frames from `body` into `read` until it ends or passes `limit`.
fn poll_read<B>(
    body: &mut B,
    read: &mut BytesMut,
    trailers: &mut Option<HeaderMap>,
    limit: usize,
    cx: &mut Context<'_>,
) -> Poll<Result<Read, BoxError>>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    loop {
        let Some(frame) = ready!(Pin::new(&mut *body).poll_frame(cx)) else {
            return Poll::Ready(Ok(Read::Whole));
        };
        let frame = frame.map_err(Into::into)?;
        match frame.into_data() {
            Ok(mut data) => {
                let chunk = data.copy_to_bytes(data.remaining());
                if read.len() + chunk.len() > limit {
                    return Poll::Ready(Ok(Read::Overflowed(chunk)));
                }
                read.extend_from_slice(&chunk);
            }
            Err(frame) => {
                if let Ok(more) = frame.into_trailers() {
                    trailers.get_or_insert_with(HeaderMap::new).extend(more);
                }
            }
        }
    }
}

impl<S, B> Future for BufferFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>>,
    S::Error: Into<BoxError>,
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project().state.project() {
                StateProj::Reading {
                    parts,
                    body,
                    read,
                    trailers,
                    limit,
                    service,
                } => {
                    let Some(inner) = body.as_mut() else {
                        return Poll::Ready(Err("buffered request polled after completion".into()));
                    };
                    let outcome = ready!(poll_read(inner, read, trailers, *limit, cx))?;
                    let replay = match outcome {
                        Read::Whole => {
                            ReplayBody::buffered_with(mem::take(read).freeze(), trailers.take())
                        }
                        Read::Overflowed(chunk) => {
                            tracing::trace!(
                                limit = *limit,
                                "request body over the buffer limit: sent once"
                            );
                            let mut prefix = mem::take(read);
                            prefix.extend_from_slice(&chunk);
                            match body.take() {
                                Some(rest) => ReplayBody::streaming(prefix.freeze(), rest),
                                None => ReplayBody::from(prefix.freeze()),
                            }
                        }
                    };
                    let (Some(parts), Some(mut service)) = (parts.take(), service.take()) else {
                        return Poll::Ready(Err("buffered request polled after completion".into()));
                    };
                    let future = service.call(Request::from_parts(parts, replay));
                    self.as_mut().project().state.set(State::Calling { future });
                }
                StateProj::Calling { future } => {
                    return future.poll(cx).map_err(Into::into);
                }
            }
        }
    }
}

impl<S, B> fmt::Debug for BufferFuture<S, B>
where
    S: Service<Request<ReplayBody<B>>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufferFuture").finish_non_exhaustive()
    }
}
