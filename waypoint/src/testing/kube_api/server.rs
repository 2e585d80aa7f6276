//! The listener and its connections, and the gate that takes the server away.
//!
//! While paused, every connection is closed and new ones are accepted and closed at
//! once, so clients fail fast (a request on a pooled connection, a new connect, an
//! open watch) the way they do when an API server restarts, instead of hanging in
//! the kernel's backlog. Open watch streams end mid-body; kube reads that as the
//! end of the stream and resumes from its last resourceVersion.

use super::handler::handle;
use super::Shared;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Gate {
    Serving,
    Paused,
    Stopped,
}

pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut gate = shared.gate.subscribe();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = gate.wait_for(|g| *g == Gate::Stopped) => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                log::warn!("fake kube-apiserver accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if *shared.gate.borrow() != Gate::Serving {
            continue;
        }
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(stream, shared.clone()));
    }
}

async fn connection(stream: tokio::net::TcpStream, shared: Arc<Shared>) {
    let mut gate = shared.gate.subscribe();
    let service = {
        let shared = shared.clone();
        service_fn(move |req| handle(shared.clone(), req))
    };
    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = conn => {}
        _ = gate.wait_for(|g| *g != Gate::Serving) => {}
    }
}
