//! A real dnsmasq on loopback, with a config the test writes.
//!
//! Host (A/AAAA) records live in an `addn-hosts` file, which dnsmasq reads again
//! on SIGHUP; SRV records live in the config file, which it does not, so changing
//! them restarts the server on the same port.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::{binary, free_port, is_root, TempDir};

/// The zone every test name lives in; dnsmasq answers it from local data only.
pub const ZONE: &str = "mesh.test";

#[derive(Debug)]
pub struct Dnsmasq {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
    binary: PathBuf,
}

impl Dnsmasq {
    /// Starts dnsmasq serving `hosts` (hosts-file lines) and `records` (config
    /// lines such as `srv-host=`), every answer with a TTL of 1 s.
    pub async fn start(hosts: &str, records: &str) -> Dnsmasq {
        let mut dnsmasq = Dnsmasq {
            child: None,
            port: free_port(),
            dir: TempDir::new("dnsmasq"),
            binary: binary("dnsmasq", "dnsmasq"),
        };
        dnsmasq.write_hosts(hosts);
        dnsmasq.launch(records).await;
        dnsmasq
    }

    pub fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Replaces the host records and has dnsmasq read them again.
    pub async fn set_hosts(&self, hosts: &str) {
        self.write_hosts(hosts);
        let pid = self
            .child
            .as_ref()
            .and_then(Child::id)
            .expect("dnsmasq is running");
        let status = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .await
            .expect("run kill");
        assert!(status.success(), "SIGHUP to dnsmasq failed");
    }

    /// Restarts dnsmasq on the same port with new config records.
    pub async fn restart(&mut self, records: &str) {
        self.stop().await;
        self.launch(records).await;
    }

    /// Stops the server; lookups then fail.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    fn write_hosts(&self, hosts: &str) {
        std::fs::write(self.dir.join("hosts"), hosts).expect("write the hosts file");
    }

    async fn launch(&mut self, records: &str) {
        let conf = self.dir.join("dnsmasq.conf");
        std::fs::write(&conf, self.config(records)).expect("write the dnsmasq config");
        let log = std::fs::File::create(self.dir.join("dnsmasq.log")).expect("create the log");
        let mut command = Command::new(&self.binary);
        command
            .arg("--keep-in-foreground")
            .arg(format!("--conf-file={}", conf.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        if is_root() {
            command.arg("--user=root");
        }
        self.child = Some(command.spawn().expect("start dnsmasq"));
        self.wait_until_listening().await;
    }

    fn config(&self, records: &str) -> String {
        let dir = self.dir.path().display();
        format!(
            "port={port}\nlisten-address=127.0.0.1\nbind-interfaces\nno-resolv\nno-hosts\n\
             local=/{ZONE}/\nlocal-ttl=1\naddn-hosts={dir}/hosts\npid-file={dir}/dnsmasq.pid\n\
             {records}\n",
            port = self.port,
        )
    }

    async fn wait_until_listening(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if tokio::net::TcpStream::connect(self.address()).await.is_ok() {
                return;
            }
            let child = self.child.as_mut().expect("launched");
            if let Ok(Some(status)) = child.try_wait() {
                panic!("dnsmasq exited with {status}: {}", self.log());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "dnsmasq never listened: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dnsmasq.log")).unwrap_or_default()
    }
}
