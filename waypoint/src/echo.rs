//! An echo backend: answers every request with what it saw, naming itself. The demo
//! runs these as the example's pods; the tests use them as real upstreams, and make
//! them misbehave on purpose:
//! - `x-echo-status: N` answers status N; `x-echo-delay-ms: N` answers after N ms;
//!   `x-echo-reset: 1` closes the connection without answering.
//! - It speaks HTTP/1.1 and HTTP/2 with prior knowledge, and says which one
//!   carried the request (`"version"`).
//! - [`Echo::fail_next`] makes the next N requests answer a given status.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;

/// A running echo server.
pub struct Echo {
    pub addr: SocketAddr,
    pub name: String,
    requests: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
    faults: Arc<Faults>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Faults {
    fail_next: AtomicU64,
    fail_status: std::sync::atomic::AtomicU16,
}

impl Echo {
    pub async fn start(addr: SocketAddr, name: &str) -> std::io::Result<Echo> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(AtomicU64::new(0));
        let faults = Arc::new(Faults::default());
        let connections = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(serve(
            listener,
            name.to_string(),
            requests.clone(),
            connections.clone(),
            faults.clone(),
        ));
        Ok(Echo {
            addr,
            name: name.to_string(),
            requests,
            connections,
            faults,
            task,
        })
    }

    /// TCP connections this backend has accepted.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// The next `n` requests are answered with `status`.
    pub fn fail_next(&self, n: u64, status: u16) {
        self.faults.fail_status.store(status, Ordering::SeqCst);
        self.faults.fail_next.store(n, Ordering::SeqCst);
    }

    /// Requests this backend has answered.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    listener: TcpListener,
    name: String,
    requests: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
    faults: Arc<Faults>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        connections.fetch_add(1, Ordering::Relaxed);
        let name = name.clone();
        let requests = requests.clone();
        let faults = faults.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                requests.fetch_add(1, Ordering::Relaxed);
                let forced = faults
                    .fail_next
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
                    .then(|| faults.fail_status.load(Ordering::SeqCst));
                echo(req, name.clone(), forced)
            });
            // HTTP/1.1, or HTTP/2 with prior knowledge (h2c), as the client speaks.
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

#[derive(Debug, thiserror::Error)]
enum EchoError {
    #[error(transparent)]
    Body(#[from] hyper::Error),
    #[error("reset on request")]
    Reset,
}

fn header_num(parts: &http::request::Parts, name: &str) -> Option<u64> {
    parts.headers.get(name)?.to_str().ok()?.parse().ok()
}

async fn echo(
    req: Request<Incoming>,
    name: String,
    forced: Option<u16>,
) -> Result<Response<Full<Bytes>>, EchoError> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    if let Some(ms) = header_num(&parts, "x-echo-delay-ms") {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    if parts.headers.contains_key("x-echo-reset") {
        // An error from the service makes hyper drop the connection unanswered.
        return Err(EchoError::Reset);
    }
    let status = forced.or_else(|| header_num(&parts, "x-echo-status").map(|s| s as u16));
    // Repeated headers are joined with "," the way HTTP allows them to be folded.
    let mut headers = serde_json::Map::new();
    for name in parts.headers.keys() {
        let values: Vec<String> = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        headers.insert(name.as_str().to_string(), values.join(",").into());
    }
    let doc = serde_json::json!({
        "pod": name,
        "method": parts.method.as_str(),
        "version": format!("{:?}", parts.version),
        "uri": parts.uri.to_string(),
        "headers": headers,
        "body_bytes": body.len(),
    });
    let mut resp = Response::new(Full::new(Bytes::from(doc.to_string() + "\n")));
    if let Some(s) = status.and_then(|s| http::StatusCode::from_u16(s).ok()) {
        *resp.status_mut() = s;
    }
    resp.headers_mut()
        .insert("x-pod", name.parse().expect("pod names are header-safe"));
    resp.headers_mut()
        .insert("content-type", "application/json".parse().expect("static"));
    Ok(resp)
}
