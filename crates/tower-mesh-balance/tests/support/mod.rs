//! Shared test doubles: a discovery stream driven by hand and endpoints whose
//! answers, latency and readiness the test controls.

#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_util::Stream;
use tokio::sync::oneshot;
use tower::discover::Change;
use tower::{Service, ServiceExt};
use tower_mesh_balance::{BoxError, LoadBalancer, NoHealthyInstanceError};

// ===== a hand-driven Discover =====

enum Step<K, S> {
    Change(Change<K, S>),
    Error(&'static str),
    End,
}

struct Feed<K, S> {
    steps: VecDeque<Step<K, S>>,
    ended: bool,
    waker: Option<Waker>,
}

/// A discovery stream fed by a [`DiscoverHandle`].
pub struct TestDiscover<K, S> {
    feed: Arc<Mutex<Feed<K, S>>>,
}

/// Pushes changes, errors and the end into a [`TestDiscover`].
pub struct DiscoverHandle<K, S> {
    feed: Arc<Mutex<Feed<K, S>>>,
}

impl<K, S> Clone for DiscoverHandle<K, S> {
    fn clone(&self) -> Self {
        DiscoverHandle {
            feed: self.feed.clone(),
        }
    }
}

pub fn discover<K, S>() -> (TestDiscover<K, S>, DiscoverHandle<K, S>) {
    let feed = Arc::new(Mutex::new(Feed {
        steps: VecDeque::new(),
        ended: false,
        waker: None,
    }));
    (TestDiscover { feed: feed.clone() }, DiscoverHandle { feed })
}

impl<K, S> DiscoverHandle<K, S> {
    fn push(&self, step: Step<K, S>) {
        let mut feed = self.feed.lock().unwrap();
        feed.steps.push_back(step);
        if let Some(waker) = feed.waker.take() {
            waker.wake();
        }
    }

    pub fn insert(&self, key: K, service: S) {
        self.push(Step::Change(Change::Insert(key, service)));
    }

    pub fn remove(&self, key: K) {
        self.push(Step::Change(Change::Remove(key)));
    }

    pub fn fail(&self, message: &'static str) {
        self.push(Step::Error(message));
    }

    pub fn end(&self) {
        self.push(Step::End);
    }
}

impl<K, S> Stream for TestDiscover<K, S> {
    type Item = Result<Change<K, S>, BoxError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut feed = self.feed.lock().unwrap();
        if feed.ended {
            return Poll::Ready(None);
        }
        match feed.steps.pop_front() {
            Some(Step::Change(change)) => Poll::Ready(Some(Ok(change))),
            Some(Step::Error(message)) => Poll::Ready(Some(Err(message.into()))),
            Some(Step::End) => {
                feed.ended = true;
                Poll::Ready(None)
            }
            None => {
                feed.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl<K, S> Unpin for TestDiscover<K, S> {}

// ===== a controllable endpoint =====

/// What an endpoint does with a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Answers at once.
    Immediate,
    /// Answers after this long (tokio time).
    Delay(Duration),
    /// Answers when the test releases the call.
    Hold,
}

pub struct Control {
    pub id: usize,
    mode: Mutex<Mode>,
    failing: AtomicBool,
    not_ready_once: AtomicBool,
    pub calls: AtomicUsize,
    held: Mutex<Vec<oneshot::Sender<()>>>,
}

impl Control {
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// The next `poll_ready` fails.
    pub fn fail_readiness_once(&self) {
        self.not_ready_once.store(true, Ordering::SeqCst);
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn held(&self) -> usize {
        self.held.lock().unwrap().len()
    }

    /// Lets the oldest held call answer.
    pub fn release_one(&self) {
        let sender = self.held.lock().unwrap().remove(0);
        let _ = sender.send(());
    }

    pub fn release_all(&self) {
        for sender in self.held.lock().unwrap().drain(..) {
            let _ = sender.send(());
        }
    }
}

/// An endpoint answering `(endpoint id, request)`.
#[derive(Clone)]
pub struct TestEndpoint {
    pub control: Arc<Control>,
}

pub fn endpoint(id: usize) -> (TestEndpoint, Arc<Control>) {
    let control = Arc::new(Control {
        id,
        mode: Mutex::new(Mode::Immediate),
        failing: AtomicBool::new(false),
        not_ready_once: AtomicBool::new(false),
        calls: AtomicUsize::new(0),
        held: Mutex::new(Vec::new()),
    });
    (
        TestEndpoint {
            control: control.clone(),
        },
        control,
    )
}

type Answer = Pin<Box<dyn Future<Output = Result<(usize, u64), BoxError>> + Send>>;

impl Service<u64> for TestEndpoint {
    type Response = (usize, u64);
    type Error = BoxError;
    type Future = Answer;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.control.not_ready_once.swap(false, Ordering::SeqCst) {
            return Poll::Ready(Err("endpoint not ready".into()));
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: u64) -> Answer {
        let control = self.control.clone();
        control.calls.fetch_add(1, Ordering::SeqCst);
        let mode = *control.mode.lock().unwrap();
        let held = (mode == Mode::Hold).then(|| {
            let (sender, receiver) = oneshot::channel();
            control.held.lock().unwrap().push(sender);
            receiver
        });
        Box::pin(async move {
            if let Mode::Delay(delay) = mode {
                tokio::time::sleep(delay).await;
            }
            if let Some(receiver) = held {
                let _ = receiver.await;
            }
            if control.failing.load(Ordering::SeqCst) {
                return Err(format!("endpoint {} failed", control.id).into());
            }
            Ok((control.id, request))
        })
    }
}

// ===== helpers =====

pub type Balancer<C = tower_mesh_core::ErrorsAsFailures> =
    LoadBalancer<TestDiscover<usize, TestEndpoint>, u64, C>;

/// A discovery stream, its handle, and the controls of its endpoints.
pub type Endpoints = (
    TestDiscover<usize, TestEndpoint>,
    DiscoverHandle<usize, TestEndpoint>,
    Vec<Arc<Control>>,
);

/// `n` endpoints keyed `0..n`, already inserted into a fresh discovery stream.
pub fn endpoints(n: usize) -> Endpoints {
    let (discover, handle) = discover();
    let controls = (0..n)
        .map(|id| {
            let (service, control) = endpoint(id);
            handle.insert(id, service);
            control
        })
        .collect();
    (discover, handle, controls)
}

/// Sends one request and returns the id of the endpoint that answered.
pub async fn call<C>(balancer: &mut Balancer<C>, request: u64) -> Result<usize, BoxError>
where
    Balancer<C>: Service<u64, Response = (usize, u64), Error = BoxError>,
{
    let (id, echoed) = balancer.ready().await?.call(request).await?;
    assert_eq!(echoed, request, "the answer belongs to another request");
    Ok(id)
}

/// Which endpoint answers each of `count` requests numbered from `first`.
pub async fn picks<C>(balancer: &mut Balancer<C>, first: u64, count: u64) -> Vec<usize>
where
    Balancer<C>: Service<u64, Response = (usize, u64), Error = BoxError>,
{
    let mut picked = Vec::new();
    for request in first..first + count {
        picked.push(call(balancer, request).await.expect("call succeeds"));
    }
    picked
}

/// Polls the balancer once, applying discovery changes and health news.
pub fn poll_once<C>(balancer: &mut Balancer<C>) -> Poll<Result<(), BoxError>>
where
    Balancer<C>: Service<u64, Response = (usize, u64), Error = BoxError>,
{
    let waker = futures_util::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    balancer.poll_ready(&mut cx)
}

pub fn is_no_healthy(error: &BoxError) -> bool {
    error.downcast_ref::<NoHealthyInstanceError>().is_some()
}
