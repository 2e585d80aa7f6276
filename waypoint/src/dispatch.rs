//! Where a detected connection goes: HTTP/1.1 and HTTP/2 (prior knowledge) to
//! the one Pingora proxy, configured once for each so that neither waits for
//! bytes the other needs, and opaque bytes to the TCP proxy.

use crate::detect::Detected;
use crate::proxy::WaypointProxy;
use crate::tcp::{Inbound, TcpProxy};
use pingora::apps::ServerApp;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use std::sync::Arc;

pub struct Dispatch {
    /// HTTP/1.1 only: Pingora's h2c sniffing would wait for 24 bytes that a
    /// short request never sends.
    pub http1: Arc<HttpProxy<WaypointProxy>>,
    /// HTTP/2 only, for connections that began with the preface.
    pub http2: Arc<HttpProxy<WaypointProxy>>,
    pub tcp: TcpProxy,
}

impl Dispatch {
    /// Serves an HTTP connection whose first bytes, `seen`, were read to detect it.
    pub async fn http(
        &self,
        detected: Detected,
        mut stream: L4Stream,
        seen: &[u8],
        shutdown: &ShutdownWatch,
    ) {
        stream.rewind(seen);
        let app = match detected {
            Detected::Http2 => &self.http2,
            _ => &self.http1,
        };
        let mut stream: pingora::protocols::Stream = Box::new(stream);
        // Pingora returns the stream while an HTTP/1.1 client keeps the
        // connection alive: many requests ride one connection.
        while let Some(next) = app.process_new(stream, shutdown).await {
            stream = next;
        }
    }

    pub async fn tcp(&self, stream: impl crate::tcp::Io, seen: Vec<u8>, inbound: Inbound) {
        self.tcp.forward(stream, seen, inbound).await
    }

    /// Wakes idle keep-alive sessions so they see the shutdown.
    pub async fn cleanup(&self) {
        self.http1.cleanup().await;
        self.http2.cleanup().await;
    }
}
