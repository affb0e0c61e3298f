//! A line-protocol server on loopback whose health the test controls, and a
//! client for it as a tower service.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::service_fn;
use tower::util::BoxCloneSyncService;

/// Answers that may be given at once when none are held: more than any test sends.
const ANSWERS: usize = 1 << 20;

/// A server on `127.0.0.1` at a port the system picks. Every connection sends one
/// line and gets `ok` back, or `unavailable` while the server is marked unhealthy.
#[derive(Debug, Clone)]
pub(crate) struct Backend {
    addr: SocketAddr,
    state: Arc<State>,
}

#[derive(Debug)]
struct State {
    healthy: AtomicBool,
    connections: AtomicUsize,
    /// Answers wait for a permit here, so a test can hold requests in flight.
    answers: Semaphore,
}

impl Backend {
    /// Binds the server and serves connections in the background.
    pub(crate) async fn start() -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let state = Arc::new(State {
            healthy: AtomicBool::new(true),
            connections: AtomicUsize::new(0),
            answers: Semaphore::new(ANSWERS),
        });
        let backend = Backend {
            addr: listener.local_addr().expect("a bound address"),
            state: state.clone(),
        };
        tokio::spawn(serve(listener, state));
        backend
    }

    pub(crate) fn set_healthy(&self, healthy: bool) {
        self.state.healthy.store(healthy, Ordering::SeqCst);
    }

    /// Connections accepted so far.
    pub(crate) fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Holds every answer until [`release`](Self::release).
    pub(crate) async fn hold_answers(&self) {
        let all = self.state.answers.available_permits() as u32;
        let held = self.state.answers.acquire_many(all).await;
        held.expect("the semaphore is never closed").forget();
    }

    pub(crate) fn release(&self) {
        self.state.answers.add_permits(ANSWERS);
    }

    /// A client that sends one line per request on a new connection.
    pub(crate) fn client(&self) -> BoxCloneSyncService<&'static str, String, io::Error> {
        let addr = self.addr;
        BoxCloneSyncService::new(service_fn(move |line: &'static str| send(addr, line)))
    }
}

async fn serve(listener: TcpListener, state: Arc<State>) {
    while let Ok((stream, _)) = listener.accept().await {
        state.connections.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(answer(stream, state.clone()));
    }
}

async fn answer(stream: TcpStream, state: Arc<State>) -> io::Result<()> {
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    drop(state.answers.acquire().await);
    let reply = if state.healthy.load(Ordering::SeqCst) {
        "ok\n"
    } else {
        "unavailable\n"
    };
    stream.get_mut().write_all(reply.as_bytes()).await
}

async fn send(addr: SocketAddr, line: &'static str) -> io::Result<String> {
    let mut stream = BufReader::new(TcpStream::connect(addr).await?);
    stream
        .get_mut()
        .write_all(format!("{line}\n").as_bytes())
        .await?;
    let mut reply = String::new();
    stream.read_line(&mut reply).await?;
    match reply.trim_end() {
        "ok" => Ok(reply.trim_end().to_owned()),
        other => Err(io::Error::other(format!("backend answered {other:?}"))),
    }
}

/// Yields to the runtime until `done` holds, for at most a generous number of turns,
/// so a test waits for real network events without sleeping and without hanging.
pub(crate) async fn until(mut done: impl FnMut() -> bool) {
    for _ in 0..1_000_000 {
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("the condition never held");
}
