//! Envoy as the yardstick: one process per static config, each expressing what
//! the waypoint row beside it does (`http` for the seed routing over HTTP/1.1
//! and gRPC, `tcp` for opaque TCP).

pub mod http;
pub mod tcp;

use super::seed::{free_addr, wait_listening};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

pub struct Envoy {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Envoy {
    /// `None` when no Envoy binary is installed. `config` writes the static
    /// config for a listener on the address it is given.
    pub async fn start(workers: usize, config: impl FnOnce(SocketAddr) -> String) -> Option<Envoy> {
        let bin = std::env::var("ENVOY").unwrap_or_else(|_| "envoy".into());
        let dir = tempfile::tempdir().unwrap();
        let addr = free_addr();
        let path = dir.path().join("envoy.yaml");
        std::fs::write(&path, config(addr)).unwrap();
        let child = Command::new(bin)
            .arg("-c")
            .arg(&path)
            .args(["--concurrency", &workers.to_string()])
            .args(["--log-level", "error"])
            .arg("--disable-hot-restart")
            .stdout(Stdio::null())
            .spawn()
            .ok()?;
        wait_listening(addr).await;
        Some(Envoy {
            child,
            addr,
            _dir: dir,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
