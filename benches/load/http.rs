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

#[derive(Clone)]
pub enum Scenario {
    Plaintext(SocketAddr),
    Hbone {
        addr: SocketAddr,
        tls: Arc<rustls::ClientConfig>,
    },
}

struct Connection(hyper::client::conn::http1::SendRequest<Empty<Bytes>>);

async fn open(scenario: &Scenario, hbone: Option<&HboneClient>) -> Connection {
    let (sender, conn) = match scenario {
        Scenario::Plaintext(addr) => {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            tcp.set_nodelay(true).unwrap();
            hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .unwrap()
        }
        Scenario::Hbone { .. } => {
            let stream = hbone
                .unwrap()
                .open(super::world::PRODUCTPAGE_VIP)
                .await
                .unwrap();
            let (s, c) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(async move {
                let _ = c.await;
            });
            return Connection(s);
        }
    };
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Connection(sender)
}

impl Caller for Connection {
    async fn call(&mut self) -> bool {
        let req = http::Request::builder()
            .uri("/productpage")
            .header("host", "productpage:9080")
            .body(Empty::new())
            .unwrap();
        if self.0.ready().await.is_err() {
            return false;
        }
        match self.0.send_request(req).await {
            Ok(resp) => {
                let ok = resp.status() == 200;
                ok && resp.into_body().collect().await.is_ok()
            }
            Err(_) => false,
        }
    }
}

pub async fn run(
    scenario: Scenario,
    name: &str,
    conns: usize,
    duration: Duration,
    pid: u32,
) -> Report {
    // One HBONE connection carries every tunnel, as one ztunnel-to-waypoint pair does.
    let hbone = match &scenario {
        Scenario::Hbone { addr, tls } => {
            Some(HboneClient::connect(*addr, tls.clone()).await.unwrap())
        }
        Scenario::Plaintext(_) => None,
    };
    let mut callers = Vec::new();
    for _ in 0..conns {
        callers.push(open(&scenario, hbone.as_ref()).await);
    }
    driver::closed_loop(name, callers, duration, pid).await
}
