//! Where a detected connection goes: HTTP/1.1 and HTTP/2 (prior knowledge) to
//! the one Pingora proxy, configured once for each so that neither waits for
//! bytes the other needs, and opaque bytes to the TCP proxy. HTTP/1.1
//! keep-alive is looped here, one Pingora session per request.

use crate::detect::Detected;
use crate::proxy::WaypointProxy;
use crate::tcp::{Inbound, TcpProxy};
use bytes::BytesMut;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// How long a kept-alive HTTP/1.1 connection may wait for its next request:
/// Pingora's default, which it applied when it ran this loop itself.
const KEEPALIVE: Duration = Duration::from_secs(60);
/// The next request's first read, on the task while the connection idles:
/// room for a typical request head, so Pingora seldom needs another read
/// (on the plaintext listener, a system call), and small beside the 18 KiB.
const FIRST_READ: usize = 1024;
/// What Pingora starts a request head's buffer with.
const HEAD_BUFFER: usize = 4096;

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
        let stream: pingora::protocols::Stream = Box::new(stream);
        match detected {
            Detected::Http2 => {
                self.http2.process_new(stream, shutdown).await;
            }
            _ => self.http1(stream, shutdown).await,
        }
    }

    /// Serves HTTP/1.1 requests one after another on a kept-alive connection.
    /// Pingora's own loop would park each wait for the next request inside a
    /// new request's session, whose futures and 4 KiB head buffer made an idle
    /// kept-alive tunnel cost about 18 KiB; here the wait holds the stream alone,
    /// and the bytes it reads start the next session's request head.
    async fn http1(&self, stream: pingora::protocols::Stream, shutdown: &ShutdownWatch) {
        let app = &self.http1;
        let mut session = ServerSession::new_http1(stream);
        // As Pingora's loop: no reuse once shutdown has begun.
        session.set_keepalive((!*shutdown.borrow()).then_some(KEEPALIVE.as_secs()));
        let limit = app.server_options().and_then(|o| o.keepalive_request_limit);
        session.set_keepalive_reuses_remaining(limit);
        loop {
            let Some(reused) = app.process_new_http(session, shutdown).await else {
                return;
            };
            let (mut stream, settings) = reused.consume();
            let Some(start) = next_request(&mut stream, shutdown).await else {
                return;
            };
            session = ServerSession::new_http1(stream);
            if let Some(settings) = settings {
                settings.apply_to_session(&mut session);
            }
            session.set_pipelined_prefix(start);
        }
    }

    pub async fn tcp(&self, stream: impl crate::tcp::Io, seen: Vec<u8>, inbound: Inbound) {
        self.tcp.forward(stream, seen, inbound).await
    }

    /// This worker's pool of upstream HBONE connections (its proxies share it).
    pub fn hbone_pool(&self) -> Option<Arc<crate::hbone::pool::HbonePool>> {
        self.tcp.hbone.as_ref().map(|h| h.pool.clone())
    }

    /// Wakes idle keep-alive sessions so they see the shutdown.
    pub async fn cleanup(&self) {
        self.http1.cleanup().await;
        self.http2.cleanup().await;
    }
}

/// The first bytes of the next request on a kept-alive connection, in a
/// buffer of the size Pingora starts a head with; `None` if the client closes,
/// stays silent past [`KEEPALIVE`], or the server shuts down. The wait holds
/// no allocation of its own.
async fn next_request(
    stream: &mut pingora::protocols::Stream,
    shutdown: &ShutdownWatch,
) -> Option<BytesMut> {
    let mut first = [0u8; FIRST_READ];
    let mut shutdown = shutdown.clone();
    let read = tokio::select! {
        read = tokio::time::timeout(KEEPALIVE, stream.read(&mut first)) => read,
        _ = shutdown.wait_for(|down| *down) => return None,
    };
    let n = match read {
        Ok(Ok(n)) if n > 0 => n,
        _ => return None,
    };
    let mut start = BytesMut::with_capacity(HEAD_BUFFER);
    start.extend_from_slice(&first[..n]);
    Some(start)
}
