//! Loopback hyper backends that a chaos schedule stops and restarts on the same
//! port, and the tallies a chaos run keeps.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::{JoinHandle, JoinSet};
use tower_mesh::prelude::ServiceInstance;

/// A hyper server on `127.0.0.1` answering `200 ok`, which can be stopped (its
/// listener and every open connection closed) and started again on its port.
#[derive(Debug)]
pub(crate) struct Backend {
    addr: SocketAddr,
    answered: Arc<AtomicU64>,
    server: Mutex<Option<JoinHandle<()>>>,
}

impl Backend {
    pub(crate) async fn start() -> Arc<Backend> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let backend = Backend {
            addr: listener.local_addr().expect("a bound address"),
            answered: Arc::new(AtomicU64::new(0)),
            server: Mutex::new(None),
        };
        backend.serve(listener);
        Arc::new(backend)
    }

    pub(crate) fn instance(&self, id: &str) -> ServiceInstance {
        ServiceInstance::new(id, self.addr.ip().to_string(), self.addr.port())
    }

    /// Requests answered so far, over every run of the server.
    pub(crate) fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    /// Closes the listener and every connection; new connections are refused.
    pub(crate) async fn stop(&self) {
        let task = self.server.lock().unwrap().take();
        if let Some(task) = task {
            task.abort();
            // Wait for the abort, so the port is free when this returns.
            let _ = task.await;
        }
    }

    /// Listens on the same port again.
    pub(crate) async fn restart(&self) {
        let listener = rebind(self.addr).await.expect("the backend's port again");
        self.serve(listener);
    }

    fn serve(&self, listener: TcpListener) {
        let task = tokio::spawn(accept(listener, self.answered.clone()));
        *self.server.lock().unwrap() = Some(task);
    }
}

/// Binds `addr` again, waiting out the moment the old socket takes to close.
async fn rebind(addr: SocketAddr) -> io::Result<TcpListener> {
    let mut attempts = 0;
    loop {
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        match socket.bind(addr).and_then(|()| socket.listen(1_024)) {
            Ok(listener) => return Ok(listener),
            Err(error) if attempts == 50 => return Err(error),
            Err(_) => attempts += 1,
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Serves every connection on a task of a set owned by this one, so aborting this
/// task closes them all.
async fn accept(listener: TcpListener, answered: Arc<AtomicU64>) {
    let mut connections = JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        let answered = answered.clone();
        let service =
            service_fn(move |request: Request<Incoming>| answer(request, answered.clone()));
        connections.spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
        // Reap the connections that ended, so the set does not grow in a soak.
        while connections.try_join_next().is_some() {}
    }
}

async fn answer(
    _request: Request<Incoming>,
    answered: Arc<AtomicU64>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    answered.fetch_add(1, Ordering::Relaxed);
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}
