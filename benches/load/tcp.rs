//! Opaque TCP load: `conns` connections (or HBONE tunnels to the `echo-tcp`
//! Service, whose port is named `tcp-echo`), each writing a 64-byte message and
//! reading it back before the next: one round trip per call.

use super::driver::{self, Caller, Report};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use waypoint::hbone::client::HboneClient;
use waypoint::testing::{pods_yaml, Pod};

pub const VIP: &str = "10.96.3.2:7000";

pub const MANIFESTS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: echo-tcp, namespace: default}
spec:
  clusterIP: 10.96.3.2
  ports: [{name: tcp-echo, port: 7000, targetPort: http}]
  selector: {app: echo-tcp}
"#;

/// Echoes every byte back on each connection it accepts.
pub struct EchoServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl EchoServer {
    pub async fn start() -> EchoServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                // Each 64-byte answer is a whole segment; Nagle would hold it
                // for the client's delayed ACK.
                let _ = s.set_nodelay(true);
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        EchoServer { addr, task }
    }

    /// The Pod the waypoint's config names for it.
    pub fn pod(&self) -> String {
        pods_yaml(&[Pod {
            name: "echo-tcp-1",
            app: "echo-tcp",
            version: "v1",
            port: self.addr.port(),
        }])
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
pub enum Scenario {
    /// A plain TCP listener (Envoy's `tcp_proxy`).
    Plaintext(SocketAddr),
    /// An HBONE server: the waypoint, or Envoy terminating HBONE.
    Hbone {
        addr: SocketAddr,
        tls: Arc<rustls::ClientConfig>,
    },
}

const MESSAGE: [u8; 64] = [b'x'; 64];

struct PingPong<S> {
    stream: S,
    buf: [u8; 64],
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Caller for PingPong<S> {
    async fn call(&mut self) -> bool {
        let sent =
            self.stream.write_all(&MESSAGE).await.is_ok() && self.stream.flush().await.is_ok();
        sent && self.stream.read_exact(&mut self.buf).await.is_ok() && self.buf == MESSAGE
    }
}

pub async fn run(
    scenario: Scenario,
    name: &str,
    conns: usize,
    duration: Duration,
    pid: u32,
) -> Report {
    match scenario {
        Scenario::Plaintext(addr) => {
            let mut callers = Vec::new();
            for _ in 0..conns {
                let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                stream.set_nodelay(true).unwrap();
                callers.push(PingPong {
                    stream,
                    buf: [0; 64],
                });
            }
            driver::closed_loop(name, callers, duration, pid).await
        }
        Scenario::Hbone { addr, tls } => {
            // As for HTTP: one HBONE connection carries every tunnel.
            let hbone = HboneClient::connect(addr, tls).await.unwrap();
            let mut callers = Vec::new();
            for _ in 0..conns {
                let stream = hbone.open(VIP).await.unwrap();
                callers.push(PingPong {
                    stream,
                    buf: [0; 64],
                });
            }
            driver::closed_loop(name, callers, duration, pid).await
        }
    }
}
