//! Real hyper backends on loopback whose behaviour a test controls, and the
//! stacks under test built from the tower-mesh crates.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower_mesh_balance::ServiceInstance;

/// What a backend answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `200` with the request body echoed.
    Healthy,
    /// `503`, with `Retry-After` seconds when given.
    Unavailable { retry_after: Option<u32> },
}

#[derive(Debug)]
struct State {
    mode: Mutex<Mode>,
    /// Answers left in a temporary mode before going back to healthy.
    temporary: AtomicU32,
    requests: AtomicUsize,
    bodies: Mutex<Vec<Bytes>>,
}

/// A hyper server on `127.0.0.1` that can be made to fail, stopped and restarted
/// on the same port.
#[derive(Debug)]
pub(crate) struct Backend {
    pub(crate) addr: SocketAddr,
    state: Arc<State>,
    server: Mutex<Option<JoinHandle<()>>>,
}

impl Backend {
    pub(crate) async fn start() -> Arc<Backend> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let state = Arc::new(State {
            mode: Mutex::new(Mode::Healthy),
            temporary: AtomicU32::new(0),
            requests: AtomicUsize::new(0),
            bodies: Mutex::new(Vec::new()),
        });
        let backend = Backend {
            addr: listener.local_addr().expect("a bound address"),
            state: state.clone(),
            server: Mutex::new(None),
        };
        backend.serve(listener);
        Arc::new(backend)
    }

    fn serve(&self, listener: TcpListener) {
        let task = tokio::spawn(accept(listener, self.state.clone()));
        *self.server.lock().unwrap() = Some(task);
    }

    /// Answers in `mode` from now on.
    pub(crate) fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    /// Answers the next `count` requests in `mode`, then healthy again.
    pub(crate) fn fail_next(&self, count: u32, mode: Mode) {
        self.state.temporary.store(count, Ordering::SeqCst);
        self.set_mode(mode);
    }

    /// Stops listening and drops every open connection.
    pub(crate) fn stop(&self) {
        if let Some(task) = self.server.lock().unwrap().take() {
            task.abort();
        }
    }

    /// Requests answered so far.
    pub(crate) fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Every request body received, in order.
    pub(crate) fn bodies(&self) -> Vec<Bytes> {
        self.state.bodies.lock().unwrap().clone()
    }

    pub(crate) fn instance(&self, id: &str) -> ServiceInstance {
        ServiceInstance::new(id, self.addr.ip().to_string(), self.addr.port())
    }
}

/// Accepts connections; each connection is served on a task that is aborted with
/// this one, so stopping the backend really closes its connections.
async fn accept(listener: TcpListener, state: Arc<State>) {
    let mut connections = tokio::task::JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        let state = state.clone();
        let service = service_fn(move |request: Request<Incoming>| answer(request, state.clone()));
        connections.spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    request: Request<Incoming>,
    state: Arc<State>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    state.requests.fetch_add(1, Ordering::SeqCst);
    state.bodies.lock().unwrap().push(body.clone());
    let mode = current_mode(&state);
    let response = match mode {
        Mode::Healthy => Response::new(Full::new(body)),
        Mode::Unavailable { retry_after } => {
            let mut response = Response::new(Full::new(Bytes::from_static(b"unavailable")));
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            if let Some(seconds) = retry_after {
                response.headers_mut().insert("retry-after", seconds.into());
            }
            response
        }
    };
    Ok(response)
}

/// The mode for this answer, counting down a temporary one.
fn current_mode(state: &State) -> Mode {
    let mut mode = state.mode.lock().unwrap();
    let current = *mode;
    let left = state.temporary.load(Ordering::SeqCst);
    if left > 0 {
        state.temporary.store(left - 1, Ordering::SeqCst);
        if left == 1 {
            *mode = Mode::Healthy;
        }
    }
    current
}
