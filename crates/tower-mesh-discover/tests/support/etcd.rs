//! A real single-member etcd on loopback, in a temporary data directory, on
//! random ports; it can be killed and started again on the same data.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use etcd_client::Client;
use tokio::process::{Child, Command};

use super::{binary, free_port, TempDir};

#[derive(Debug)]
pub struct Etcd {
    child: Option<Child>,
    client_port: u16,
    peer_port: u16,
    dir: TempDir,
    binary: PathBuf,
}

impl Etcd {
    pub async fn start() -> Etcd {
        let mut etcd = Etcd {
            child: None,
            client_port: free_port(),
            peer_port: free_port(),
            dir: TempDir::new("etcd"),
            binary: binary("etcd", "etcd-server"),
        };
        etcd.launch().await;
        etcd
    }

    /// `http://127.0.0.1:<port>`, for clients.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    /// A client of its own, for the test to write with.
    pub async fn client(&self) -> Client {
        Client::connect([self.endpoint()], None)
            .await
            .expect("connect to etcd")
    }

    /// Kills etcd at once (no graceful shutdown), as a crash would.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Starts etcd again on the same ports and data.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.launch().await;
    }

    async fn launch(&mut self) {
        let client_url = self.endpoint();
        let peer_url = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::File::create(self.dir.join("etcd.log")).expect("create the log");
        let mut command = Command::new(&self.binary);
        command
            .arg("--name=test")
            .arg(format!("--data-dir={}", self.dir.join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=test={peer_url}"))
            .arg("--initial-cluster-state=new")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        self.child = Some(command.spawn().expect("start etcd"));
        self.wait_until_serving().await;
    }

    async fn wait_until_serving(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if self.answers().await {
                return;
            }
            let child = self.child.as_mut().expect("launched");
            if let Ok(Some(status)) = child.try_wait() {
                panic!("etcd exited with {status}: {}", self.log());
            }
            let now = tokio::time::Instant::now();
            assert!(now < deadline, "etcd never served: {}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn answers(&self) -> bool {
        let attempt = async {
            let mut client = Client::connect([self.endpoint()], None).await.ok()?;
            client.get("probe", None).await.ok()
        };
        let answered = tokio::time::timeout(Duration::from_secs(1), attempt).await;
        matches!(answered, Ok(Some(_)))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default()
    }
}
