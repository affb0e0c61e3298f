//! A TCP proxy on loopback whose connections the test can cut, to make a client
//! lose its server without the server going away.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

#[derive(Debug)]
pub struct Proxy {
    address: SocketAddr,
    state: Arc<Mutex<State>>,
    acceptor: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct State {
    cut: bool,
    connections: Vec<AbortHandle>,
}

impl Proxy {
    /// Forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let address = listener.local_addr().expect("local address");
        let state = Arc::new(Mutex::new(State::default()));
        let acceptor = tokio::spawn(accept(listener, upstream, state.clone()));
        Proxy {
            address,
            state,
            acceptor,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Closes every connection and refuses new ones until [`restore`](Self::restore).
    pub fn cut(&self) {
        let mut state = self.state.lock().unwrap();
        state.cut = true;
        for connection in state.connections.drain(..) {
            connection.abort();
        }
    }

    pub fn restore(&self) {
        self.state.lock().unwrap().cut = false;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.acceptor.abort();
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, state: Arc<Mutex<State>>) {
    while let Ok((inbound, _)) = listener.accept().await {
        let mut state = state.lock().unwrap();
        if state.cut {
            drop(inbound);
            continue;
        }
        let connection = tokio::spawn(forward(inbound, upstream));
        state.connections.retain(|c| !c.is_finished());
        state.connections.push(connection.abort_handle());
    }
}

async fn forward(mut inbound: TcpStream, upstream: SocketAddr) {
    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
    }
}
