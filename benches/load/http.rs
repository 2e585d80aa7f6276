//! The seed routing's load: `conns` keep-alive HTTP/1.1 connections (or HBONE
//! tunnels), one request in flight on each.

use super::driver::{self, Caller, Report};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use waypoint::hbone::client::HboneClient;

/// The `opaque-web` Service: productpage's pods behind a port named `tcp-web`,
/// which the waypoint forwards as bytes. The same requests through it cost
/// what the HBONE and TCP forwarding alone cost, the floor under the L7 rows.
pub const OPAQUE_VIP: &str = "10.96.3.3:9080";

pub const OPAQUE_MANIFEST: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: opaque-web, namespace: default}
spec:
  clusterIP: 10.96.3.3
  ports: [{name: tcp-web, port: 9080, targetPort: http}]
  selector: {app: productpage}
"#;

#[derive(Clone)]
pub enum Scenario {
    Plaintext(SocketAddr),
    /// Tunnels to `vip` through an HBONE server.
    Hbone {
        addr: SocketAddr,
        tls: Arc<rustls::ClientConfig>,
        vip: &'static str,
    },
}

pub struct Connection(hyper::client::conn::http1::SendRequest<Empty<Bytes>>);

async fn open(scenario: &Scenario, hbone: Option<&HboneClient>) -> Connection {
    let (sender, conn) = match scenario {
        Scenario::Plaintext(addr) => {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            tcp.set_nodelay(true).unwrap();
            hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .unwrap()
        }
        Scenario::Hbone { vip, .. } => {
            let stream = hbone.unwrap().open(vip).await.unwrap();
            return Connection::over(stream).await;
        }
    };
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Connection(sender)
}

impl Connection {
    /// HTTP/1.1 keep-alive inside an open tunnel.
    pub async fn over(tunnel: waypoint::hbone::H2Stream) -> Connection {
        let (s, c) = hyper::client::conn::http1::handshake(TokioIo::new(tunnel))
            .await
            .unwrap();
        tokio::spawn(async move {
            let _ = c.await;
        });
        Connection(s)
    }

    /// The status of `GET path`, once the body is read; `None` when the call failed.
    pub async fn get(&mut self, path: &str) -> Option<u16> {
        let req = http::Request::builder()
            .uri(path)
            .header("host", "productpage:9080")
            .body(Empty::new())
            .unwrap();
        self.0.ready().await.ok()?;
        let resp = self.0.send_request(req).await.ok()?;
        let status = resp.status().as_u16();
        resp.into_body().collect().await.ok()?;
        Some(status)
    }
}

impl Caller for Connection {
    async fn call(&mut self) -> bool {
        self.get("/productpage").await == Some(200)
    }
}

/// The statuses of one `GET` per path, on one connection (or tunnel): a check
/// before a timed run that it measures the answers it means to.
pub async fn statuses(scenario: &Scenario, paths: &[&str]) -> Vec<Option<u16>> {
    let hbone = connect(scenario).await;
    let mut conn = open(scenario, hbone.as_ref()).await;
    let mut out = Vec::new();
    for path in paths {
        out.push(conn.get(path).await);
    }
    out
}

async fn connect(scenario: &Scenario) -> Option<HboneClient> {
    match scenario {
        Scenario::Hbone { addr, tls, .. } => {
            Some(HboneClient::connect(*addr, tls.clone()).await.unwrap())
        }
        Scenario::Plaintext(_) => None,
    }
}

pub async fn run(
    scenario: Scenario,
    name: &str,
    conns: usize,
    duration: Duration,
    pid: u32,
) -> Report {
    // One HBONE connection carries every tunnel, as one ztunnel-to-waypoint
    // pair does; LOAD_HBONE_CONNS spreads them over more, as several nodes'
    // ztunnels would (each proxy then serves them on all its workers).
    let mut hbone = Vec::new();
    for _ in 0..super::seed::env_or("LOAD_HBONE_CONNS", 1usize).max(1) {
        hbone.push(connect(&scenario).await);
    }
    let mut callers = Vec::new();
    for i in 0..conns {
        callers.push(open(&scenario, hbone[i % hbone.len()].as_ref()).await);
    }
    driver::closed_loop(name, callers, duration, pid).await
}
