//! The HBONE listener: accepts mTLS connections, answers each CONNECT stream,
//! tells the protocol its bytes carry (from the destination port, else its
//! first bytes) and hands them to the shared Pingora proxy or the TCP proxy,
//! in-process.

use super::guard::{GuardState, Guarded};
use super::{tls::ALPN_H2, H2Stream, HboneMeta};
use crate::detect::{detect, Detected, Expect};
use crate::dispatch::Dispatch;
use crate::identity::spiffe_id_of;
use crate::limits::{Limits, Rejected};
use crate::state::State;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use log::{debug, info, warn};
use pingora::http::ResponseHeader;
use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::l4::virt::VirtualSocketStream;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::{GetProxyDigest, GetSocketDigest, SocketDigest};
use pingora::server::ShutdownWatch;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use waypoint_ir::Protocol;

/// Tunnels allowed at once on one HTTP/2 connection (SETTINGS_MAX_CONCURRENT_STREAMS).
const MAX_STREAMS_PER_CONNECTION: u32 = 1000;
/// SETTINGS_MAX_FRAME_SIZE. h2 answers a header list over the limit with a 431
/// on its stream, but one over four times the limit, or a block of more than
/// five frames (for a 60 KiB limit), with GOAWAY for the whole connection. With
/// 64 KiB frames a block can reach that fourfold size, so everything up to it
/// is refused per stream, while an unfinished block still costs at most
/// ~320 KiB per connection.
const MAX_FRAME_SIZE: u32 = 64 * 1024;

/// An accepted HBONE connection once both handshakes are done.
type H2Conn = h2::server::Connection<Guarded<tokio_rustls::server::TlsStream<TcpStream>>, Bytes>;

#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("TLS handshake: {0}")]
    Tls(String),
    #[error("TLS handshake timed out")]
    TlsTimeout,
    #[error("no HTTP/2 preface within the handshake timeout")]
    PrefaceTimeout,
    #[error("no answer to a keepalive PING within {0:?}")]
    KeepaliveTimeout(Duration),
    #[error("peer did not negotiate ALPN h2")]
    NoH2,
    #[error("peer presented no SPIFFE identity")]
    NoIdentity,
    #[error("HTTP/2: {0}")]
    H2(#[from] h2::Error),
}

pub struct HboneServer {
    pub h2: super::H2Settings,
    pub limits: Limits,
    /// Open connections and tunnels, which a drain waits for.
    pub active: Arc<std::sync::atomic::AtomicUsize>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The waypoint's identity; each handshake takes the newest.
    pub identity: Arc<crate::identity::IdentityStore>,
    pub state: Arc<State>,
}

impl HboneServer {
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        workers: Arc<crate::workers::Workers<Arc<Dispatch>>>,
        mut shutdown: ShutdownWatch,
    ) {
        loop {
            let accepted = tokio::select! {
                r = listener.accept() => r,
                _ = shutdown.changed() => return,
            };
            match accepted {
                Ok((tcp, peer)) => {
                    let this = self.clone();
                    let shutdown = shutdown.clone();
                    workers.serve(tcp, move |tcp, dispatch| async move {
                        if let Err(e) = this.connection(tcp, peer, dispatch, shutdown).await {
                            info!("hbone connection from {peer} ended: {e}");
                        }
                    });
                }
                Err(e) => {
                    warn!("hbone accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Serves a connection, its tunnels going to its worker's `dispatch`.
    async fn connection(
        self: Arc<Self>,
        tcp: TcpStream,
        peer: SocketAddr,
        dispatch: Arc<Dispatch>,
        shutdown: ShutdownWatch,
    ) -> Result<(), ConnError> {
        let local = tcp.local_addr().ok();
        // Boxed, and so freed once done: inline, the handshakes' state would
        // stay part of the task of every idle connection. The connection is a
        // local here, not an argument of another async fn, which would hold it
        // twice (as argument and as local).
        let (mut conn, source, guard) = Box::pin(self.handshake(tcp, peer)).await?;
        let rejected = &self.metrics.rejected;
        let _open = crate::app::Active::hold(&self.active);
        let keepalive = self.h2.keepalive;
        let mut silent = std::pin::pin!(super::keepalive::expired(conn.ping_pong(), keepalive));
        let mut draining = shutdown.clone();
        let mut goaway_sent = *draining.borrow();
        if goaway_sent {
            conn.graceful_shutdown();
        }
        let mut aged = std::pin::pin!(aged_out(self.h2.max_connection_age));
        loop {
            let next = tokio::select! {
                next = conn.accept() => next,
                // Draining: GOAWAY tells the client to open new tunnels elsewhere;
                // tunnels already open run to completion.
                _ = draining.changed(), if !goaway_sent => {
                    conn.graceful_shutdown();
                    goaway_sent = true;
                    continue;
                }
                // Clients keep HBONE connections for hours: without an age
                // limit, replicas added by the autoscaler would get no tunnels.
                () = &mut aged, if !goaway_sent => {
                    debug!("hbone: connection from {source} at {peer} reached its maximum age; GOAWAY");
                    conn.graceful_shutdown();
                    goaway_sent = true;
                    continue;
                }
                _ = guard.tripped.notified() => {
                    rejected.inc(Rejected::PrematureResets);
                    warn!("hbone: {source} at {peer} reset too many streams right after opening them; closing the connection");
                    // GOAWAY, then the connection ends once it is written.
                    conn.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
                    continue;
                }
                () = &mut silent => {
                    rejected.inc(Rejected::KeepaliveTimeout);
                    return Err(ConnError::KeepaliveTimeout(keepalive.timeout));
                }
            };
            let Some(next) = next else { break };
            let (req, respond) = match next {
                Ok(next) => next,
                Err(e) => {
                    let abuse = e.is_go_away()
                        && e.is_library()
                        && e.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM);
                    if abuse && !guard.too_many_resets() {
                        rejected.inc(Rejected::H2Abuse);
                    }
                    return Err(e.into());
                }
            };
            if guard.too_many_resets() {
                continue;
            }
            guard.answering(respond.stream_id().as_u32());
            let from = (source.clone(), peer);
            let tunnel = self.clone().tunnel(
                dispatch.clone(),
                req,
                respond,
                from,
                local,
                shutdown.clone(),
            );
            tokio::spawn(tunnel);
        }
        Ok(())
    }

    /// mTLS, then HTTP/2 up to the client's preface: the connection, its
    /// peer's identity and its frame guard.
    async fn handshake(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> Result<(H2Conn, Arc<crate::identity::SpiffeId>, Arc<GuardState>), ConnError> {
        let _ = tcp.set_nodelay(true);
        let rejected = &self.metrics.rejected;
        let tls = tokio::time::timeout(
            self.limits.handshake_timeout,
            TlsAcceptor::from(self.identity.server_config()).accept(tcp),
        )
        .await
        .map_err(|_| {
            rejected.inc(Rejected::TlsHandshakeTimeout);
            ConnError::TlsTimeout
        })?
        .map_err(|e| ConnError::Tls(crate::hbone::tls::describe_io_error(&e)))?;
        let (_, session) = tls.get_ref();
        if session.alpn_protocol() != Some(ALPN_H2) {
            return Err(ConnError::NoH2);
        }
        let source = session
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|leaf| spiffe_id_of(leaf))
            .map(Arc::new)
            .ok_or(ConnError::NoIdentity)?;
        debug!("hbone connection from {peer} as {source}");
        let guard = Arc::new(GuardState::new(rejected.clone()));
        // The handshake ends once the client's preface is read.
        let conn = tokio::time::timeout(
            self.limits.handshake_timeout,
            h2::server::Builder::new()
                .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
                .max_header_list_size(self.limits.max_request_headers_bytes)
                .max_frame_size(MAX_FRAME_SIZE)
                .initial_window_size(self.h2.stream_window)
                .initial_connection_window_size(self.h2.connection_window)
                .handshake::<_, Bytes>(Guarded::new(tls, self.limits, guard.clone())),
        )
        .await
        .map_err(|_| {
            rejected.inc(Rejected::PrefaceTimeout);
            ConnError::PrefaceTimeout
        })??;
        Ok((conn, source, guard))
    }

    async fn tunnel(
        self: Arc<Self>,
        dispatch: Arc<Dispatch>,
        req: Request<h2::RecvStream>,
        mut respond: h2::server::SendResponse<Bytes>,
        (source, peer): (Arc<crate::identity::SpiffeId>, SocketAddr),
        local: Option<SocketAddr>,
        shutdown: ShutdownWatch,
    ) {
        let _tunnel = crate::app::Active::hold(&self.active);
        if req.headers().len() > self.limits.max_request_headers {
            self.metrics.rejected.inc(Rejected::TooManyHeaders);
            warn!(
                "hbone: refusing a CONNECT from {source} with {} headers (at most {})",
                req.headers().len(),
                self.limits.max_request_headers
            );
            reply(&mut respond, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
            return;
        }
        let target = match connect_target(&req) {
            Ok(t) => t,
            Err(status) => {
                warn!(
                    "hbone: refusing {} {} from {source}: not a CONNECT to ip:port",
                    req.method(),
                    req.uri()
                );
                reply(&mut respond, status);
                return;
            }
        };
        let rt = self.state.current();
        let Some(resolved) = rt.snapshot.resolve_target(target) else {
            warn!("hbone: refusing CONNECT {target} from {source}: no service or workload has that address");
            reply(&mut respond, StatusCode::NOT_FOUND);
            return;
        };
        let (service, port) = match resolved {
            waypoint_ir::Target::Service { service, port }
            | waypoint_ir::Target::Workload { service, port, .. } => {
                (rt.snapshot.service(service), port)
            }
        };
        let protocol = service.port(port).map_or(Protocol::Detect, |p| p.protocol);
        let send = match respond.send_response(Response::new(()), false) {
            Ok(send) => send,
            Err(e) => {
                debug!("hbone: stream to {target} gone before it opened: {e}");
                return;
            }
        };
        // Looked up now, so that an idle tunnel keeps three counter handles
        // rather than its seven label values. No series is ever removed, so a
        // handle stays the one a scrape reads.
        let (received, sent, closed) = {
            let source_label = source.to_string();
            let labels: [&str; 7] = [
                "waypoint",
                &source_label,
                &source.namespace,
                &service.hostname,
                &service.name,
                &service.namespace,
                "mutual_tls",
            ];
            let m = &self.metrics;
            m.tcp_opened.with_label_values(&labels).inc();
            (
                m.tcp_received.with_label_values(&labels),
                m.tcp_sent.with_label_values(&labels),
                m.tcp_closed.with_label_values(&labels),
            )
        };
        drop(rt);
        let bytes = Arc::new(super::TunnelBytes::default());
        let mut tunnel = H2Stream::new(send, req.into_body()).metered(bytes.clone());
        let expect = match protocol {
            p if p.is_http() => Some(Expect::Http),
            Protocol::Detect => Some(Expect::Any {
                wait: self.limits.protocol_detection_timeout,
            }),
            _ => None,
        };
        let detected = match expect {
            Some(expect) => detect(&mut tunnel, expect).await,
            None => Ok((Detected::Opaque, Vec::new())),
        };
        match detected {
            Err(e) => {
                debug!("hbone: tunnel to {target} from {source} ended before it said anything: {e}")
            }
            Ok((Detected::Opaque, seen)) => {
                let inbound = crate::tcp::Inbound {
                    source: Some(source),
                    peer,
                    target: resolved,
                    destination: target,
                };
                // Boxed, as below: inline, the largest of these futures (several
                // KiB: authorization, dial, copy) would size the task of every
                // tunnel, including the many idle ones still waiting in `detect`.
                Box::pin(dispatch.tcp(tunnel, seen, inbound)).await;
            }
            Ok((http, seen)) => {
                let meta = HboneMeta {
                    source,
                    target,
                    peer,
                };
                let stream = pingora_stream(tunnel, meta, local);
                Box::pin(dispatch.http(http, stream, &seen, &shutdown)).await;
            }
        }
        received.inc_by(bytes.received.load(std::sync::atomic::Ordering::Relaxed));
        sent.inc_by(bytes.sent.load(std::sync::atomic::Ordering::Relaxed));
        // Last, so a scrape that sees the tunnel closed sees its bytes too.
        closed.inc();
    }
}

fn connect_target(req: &Request<h2::RecvStream>) -> Result<SocketAddr, StatusCode> {
    if req.method() != Method::CONNECT {
        return Err(StatusCode::METHOD_NOT_ALLOWED);
    }
    req.uri()
        .authority()
        .and_then(|a| a.as_str().parse::<SocketAddr>().ok())
        .ok_or(StatusCode::BAD_REQUEST)
}

/// Completes once a connection has lived `max_age`, give or take 10% so that
/// connections opened together do not all reconnect together; never without
/// one.
async fn aged_out(max_age: Option<Duration>) {
    use rand::Rng;
    let Some(age) = max_age else {
        return std::future::pending().await;
    };
    let jittered = age.mul_f64(rand::rng().random_range(0.9..1.1));
    tokio::time::sleep(jittered).await
}

fn reply(respond: &mut h2::server::SendResponse<Bytes>, status: StatusCode) {
    let mut resp = Response::new(());
    *resp.status_mut() = status;
    let _ = respond.send_response(resp, true);
}

/// Wraps a tunnel as a pingora stream whose digests carry the tunnel's addresses
/// and `HboneMeta`, which is how the proxy's hooks learn the source identity.
fn pingora_stream(tunnel: H2Stream, meta: HboneMeta, local: Option<SocketAddr>) -> L4Stream {
    let mut stream = L4Stream::from(VirtualSocketStream::new(Box::new(tunnel)));
    let digest = SocketDigest::from_raw_fd(-1);
    let _ = digest.peer_addr.set(Some(PingoraAddr::Inet(meta.peer)));
    let _ = digest.local_addr.set(local.map(PingoraAddr::Inet));
    let _ = digest
        .original_dst
        .set(Some(PingoraAddr::Inet(meta.target)));
    stream.set_socket_digest(digest);
    // The digest's type requires a CONNECT response, which nothing reads here:
    // an empty one without a case map costs no allocation, where the default
    // size took about 1 KiB per tunnel.
    let header = ResponseHeader::build_no_case(200, Some(0)).expect("static status");
    stream.set_proxy_digest(ProxyDigest::new(Box::new(header), Some(Box::new(meta))));
    stream
}

#[cfg(test)]
mod tests {
    use super::*;

    fn future_size5<A, B, C, D, E, F: std::future::Future>(
        _: impl FnOnce(A, B, C, D, E) -> F,
    ) -> usize {
        std::mem::size_of::<F>()
    }

    fn future_size7<A, B, C, D, E, G, H, F: std::future::Future>(
        _: impl FnOnce(A, B, C, D, E, G, H) -> F,
    ) -> usize {
        std::mem::size_of::<F>()
    }

    // Every idle connection and tunnel holds one of these tasks, so their size
    // is memory per connection and per tunnel (issue 14). Inline, the TCP and
    // HTTP proxies' futures made a tunnel's task 11 KiB and the handshakes
    // kept a connection's at 7 KiB; the bounds leave room for dependencies.
    #[test]
    fn idle_tasks_stay_small() {
        let connection = future_size5(HboneServer::connection);
        let tunnel = future_size7(HboneServer::tunnel);
        eprintln!("connection task {connection} bytes, tunnel task {tunnel} bytes");
        assert!(
            connection <= 5 * 1024,
            "connection task: {connection} bytes"
        );
        assert!(tunnel <= 3 * 1024, "tunnel task: {tunnel} bytes");
    }
}
