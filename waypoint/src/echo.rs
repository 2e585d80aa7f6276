//! An echo backend: answers every request with what it saw, naming itself. The demo
//! runs these as the example's pods; the tests use them as real upstreams.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;

/// A running echo server.
pub struct Echo {
    pub addr: SocketAddr,
    pub name: String,
    requests: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Echo {
    pub async fn start(addr: SocketAddr, name: &str) -> std::io::Result<Echo> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(serve(listener, name.to_string(), requests.clone()));
        Ok(Echo {
            addr,
            name: name.to_string(),
            requests,
            task,
        })
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

async fn serve(listener: TcpListener, name: String, requests: Arc<AtomicU64>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let name = name.clone();
        let requests = requests.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                requests.fetch_add(1, Ordering::Relaxed);
                echo(req, name.clone())
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

async fn echo(req: Request<Incoming>, name: String) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
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
        "uri": parts.uri.to_string(),
        "headers": headers,
        "body_bytes": body.len(),
    });
    let mut resp = Response::new(Full::new(Bytes::from(doc.to_string() + "\n")));
    resp.headers_mut()
        .insert("x-pod", name.parse().expect("pod names are header-safe"));
    resp.headers_mut()
        .insert("content-type", "application/json".parse().expect("static"));
    Ok(resp)
}
