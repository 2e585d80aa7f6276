//! Upstream HBONE: HTTP/2 connections to destinations' `:15008`, pooled per (hop
//! address, expected SPIFFE identity), each carrying many CONNECT tunnels, and
//! idle tunnels kept for the next request (`idle`).
//!
//! Invariants: a pooled connection was verified against exactly the identity in
//! its key, so a tunnel never reaches a peer with another identity; a connection
//! carries at most `max_streams` tunnels at once, idle ones included (the peer
//! counts them too), and an idle tunnel is closed to make room before a new
//! connection is dialled; a connection that fails to open a tunnel leaves the
//! pool and the tunnel is tried once on a fresh one; one key's connections are
//! dialled one at a time, so a burst of requests shares a new connection instead
//! of each racing to open its own.

use super::client::{ClientError, HboneClient};
use super::idle::{IdleTunnels, TunnelKey, TunnelStats};
use super::lease::Lease;
use super::tunnel::{Slot, Tunnel};
use super::H2Stream;
use crate::identity::{IdentityStore, SpiffeId};
use http::StatusCode;
use pingora::connectors::L4Connect;
use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;
use pingora::protocols::l4::stream::Stream;
use pingora::protocols::l4::virt::VirtualSocketStream;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Key = (SocketAddr, SpiffeId);

struct Conn {
    client: HboneClient,
    open: Arc<AtomicUsize>,
}

pub struct HbonePool {
    identity: Arc<IdentityStore>,
    h2: super::H2Settings,
    max_streams: usize,
    conns: Mutex<HashMap<Key, Vec<Arc<Conn>>>>,
    /// Client TLS configs per expected peer, for one identity generation: a
    /// rotation empties it, so new connections present the new certificate.
    tls: Mutex<(u64, HashMap<SpiffeId, Arc<rustls::ClientConfig>>)>,
    /// Connections dialled so far.
    dialled: AtomicUsize,
    /// One dial at a time per key: requests that find no room while a
    /// connection is being set up wait for it instead of dialling their own.
    dialing: Mutex<HashMap<Key, Arc<tokio::sync::Mutex<()>>>>,
    idle: Arc<IdleTunnels>,
    /// Open tunnels are counted here until closed, so a drain waits for them.
    active: Arc<AtomicUsize>,
}

impl HbonePool {
    /// At most `idle_tunnels` idle tunnels are kept, as Pingora keeps at most
    /// that many idle plaintext connections.
    pub fn new(
        identity: Arc<IdentityStore>,
        max_streams: usize,
        h2: super::H2Settings,
        idle_tunnels: usize,
        active: Arc<AtomicUsize>,
    ) -> Self {
        HbonePool {
            identity,
            h2,
            max_streams: max_streams.max(1),
            conns: Mutex::default(),
            tls: Mutex::default(),
            dialled: AtomicUsize::new(0),
            dialing: Mutex::default(),
            idle: Arc::new(IdleTunnels::new(idle_tunnels)),
            active,
        }
    }

    /// A try's claim on a tunnel for `key`; idle tunnels expire after `idle_timeout`.
    pub fn lease(&self, key: TunnelKey, idle_timeout: Option<Duration>) -> Lease {
        Lease::new(self.idle.clone(), key, idle_timeout)
    }

    /// Tunnels idle, opened and reused, for the metrics.
    pub fn tunnel_stats(&self) -> &TunnelStats {
        &self.idle.stats
    }

    /// Closes idle tunnels, now and from now on: the waypoint is stopping.
    pub fn close_idle(&self) {
        self.idle.close();
    }

    pub fn dialled(&self) -> usize {
        self.dialled.load(Ordering::Relaxed)
    }

    /// Pooled connections, and the tunnels open on them, for the metrics.
    pub fn size(&self) -> (usize, usize) {
        let conns = self.conns.lock().expect("pool lock");
        conns.values().flatten().fold((0, 0), |(c, t), conn| {
            (c + 1, t + conn.open.load(Ordering::Relaxed))
        })
    }

    fn tls(&self, expected: &SpiffeId) -> Result<Arc<rustls::ClientConfig>, ClientError> {
        let generation = self.identity.generation();
        let mut cache = self.tls.lock().expect("tls cache lock");
        if cache.0 != generation {
            *cache = (generation, HashMap::new());
        }
        if let Some(cfg) = cache.1.get(expected) {
            return Ok(cfg.clone());
        }
        let cfg = super::tls::client_config(&self.identity.bundle(), Some(expected.clone()))
            .map_err(|e| ClientError::Authority(format!("TLS configuration: {e}")))?;
        cache.1.insert(expected.clone(), cfg.clone());
        Ok(cfg)
    }

    /// A pooled connection with room for one more tunnel, reserving that room.
    fn reserve(&self, key: &Key) -> Option<Arc<Conn>> {
        let conns = self.conns.lock().expect("pool lock");
        conns.get(key)?.iter().find_map(|c| {
            c.open
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < self.max_streams).then_some(n + 1)
                })
                .ok()
                .map(|_| c.clone())
        })
    }

    /// As `reserve`; when every connection is full, an idle tunnel of this key
    /// is closed to make room rather than dialling another connection.
    fn reserve_or_free(&self, key: &Key) -> Option<Arc<Conn>> {
        self.reserve(key).or_else(|| {
            self.idle
                .close_one(key.0, &key.1)
                .then(|| self.reserve(key))
                .flatten()
        })
    }

    fn forget(&self, key: &Key, conn: &Arc<Conn>) {
        let mut conns = self.conns.lock().expect("pool lock");
        if let Some(list) = conns.get_mut(key) {
            list.retain(|c| !Arc::ptr_eq(c, conn));
        }
    }

    async fn dial(&self, key: &Key) -> Result<Arc<Conn>, ClientError> {
        let client = HboneClient::connect_with(key.0, self.tls(&key.1)?, self.h2).await?;
        self.dialled.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            client,
            open: Arc::new(AtomicUsize::new(1)),
        });
        self.conns
            .lock()
            .expect("pool lock")
            .entry(key.clone())
            .or_default()
            .push(conn.clone());
        Ok(conn)
    }

    /// A tunnel for `key`: an idle one when there is one, else a new CONNECT
    /// with `headers`.
    pub async fn open(
        &self,
        key: &TunnelKey,
        headers: &[(&str, String)],
    ) -> Result<Tunnel, ClientError> {
        let stats = self.tunnel_stats();
        if let Some(mut tunnel) = self.idle.take(key).await {
            tunnel.requests += 1;
            stats.reused.fetch_add(1, Ordering::Relaxed);
            return Ok(tunnel);
        }
        let mut tunnel = self
            .connect(key.hop, &key.expected, key.target, headers)
            .await?;
        tunnel.requests = 1;
        stats.opened.fetch_add(1, Ordering::Relaxed);
        Ok(tunnel)
    }

    /// A new tunnel for `key`, never an idle one: for a connection that is not
    /// an HTTP/1.1 exchange (a TCP stream, an HTTP/2 connection).
    pub async fn open_fresh(
        &self,
        key: &TunnelKey,
        headers: &[(&str, String)],
    ) -> Result<Tunnel, ClientError> {
        let tunnel = self
            .connect(key.hop, &key.expected, key.target, headers)
            .await?;
        self.tunnel_stats().opened.fetch_add(1, Ordering::Relaxed);
        Ok(tunnel)
    }

    /// Opens a new tunnel to `target` through the HBONE server at `hop`, which
    /// must present `expected`.
    async fn connect(
        &self,
        hop: SocketAddr,
        expected: &SpiffeId,
        target: SocketAddr,
        headers: &[(&str, String)],
    ) -> Result<Tunnel, ClientError> {
        let key = (hop, expected.clone());
        let authority = target.to_string();
        let opened = |conn: &Conn, t: Tunnel| {
            t.with_slot(Slot::reserved(conn.open.clone()))
                .holding(crate::app::Active::hold(&self.active))
        };
        if let Some(conn) = self.reserve_or_free(&key) {
            match conn.client.open_tunnel(&authority, headers).await {
                Ok(t) => return Ok(opened(&conn, t)),
                // The peer answered: the connection is fine, the tunnel is not.
                Err(e @ ClientError::Refused { .. }) => {
                    conn.open.fetch_sub(1, Ordering::AcqRel);
                    return Err(e);
                }
                Err(e) => {
                    log::debug!("hbone: pooled connection to {hop} failed ({e}); dialling again");
                    conn.open.fetch_sub(1, Ordering::AcqRel);
                    self.forget(&key, &conn);
                }
            }
        }
        let conn = {
            let gate = self
                .dialing
                .lock()
                .expect("pool lock")
                .entry(key.clone())
                .or_default()
                .clone();
            let _dialing = gate.lock().await;
            // Another request may have dialled while this one waited.
            match self.reserve_or_free(&key) {
                Some(conn) => conn,
                None => self.dial(&key).await?,
            }
        };
        match conn.client.open_tunnel(&authority, headers).await {
            Ok(t) => Ok(opened(&conn, t)),
            Err(e) => {
                conn.open.fetch_sub(1, Ordering::AcqRel);
                if !matches!(e, ClientError::Refused { .. }) {
                    self.forget(&key, &conn);
                }
                Err(e)
            }
        }
    }
}

/// Pingora's hook for our upstream: the "TCP connection" it gets is a tunnel.
#[derive(Debug)]
pub struct HboneConnect {
    pub pool: Arc<HbonePool>,
    /// Where the tunnel goes; its `client` is sent as `forwarded: for=...`, as
    /// Istio does.
    pub key: TunnelKey,
    /// The try's claim on the tunnel, for an HTTP/1.1 exchange; `None` for an
    /// HTTP/2 connection, which Pingora pools itself and which carries many
    /// requests at once.
    pub lease: Option<Lease>,
}

/// The `forwarded` header a tunnel for `key` carries.
pub fn tunnel_headers(key: &TunnelKey) -> Vec<(&'static str, String)> {
    key.client
        .map(|ip| ("forwarded", forwarded_for(ip)))
        .into_iter()
        .collect()
}

/// RFC 7239 `for=`: IPv6 addresses are quoted and bracketed.
fn forwarded_for(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => format!("for={v4}"),
        std::net::IpAddr::V6(v6) => format!("for=\"[{v6}]\""),
    }
}

impl std::fmt::Debug for HbonePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HbonePool")
            .field("identity", &self.identity.bundle().id)
            .finish()
    }
}

#[async_trait::async_trait]
impl L4Connect for HboneConnect {
    async fn connect(&self, _addr: &PingoraAddr) -> pingora::Result<Stream> {
        let key = &self.key;
        let headers = tunnel_headers(key);
        let tunnel = match &self.lease {
            Some(_) => self.pool.open(key, &headers).await,
            None => self.pool.open_fresh(key, &headers).await,
        };
        let tunnel = tunnel.map_err(|e| {
            let why = format!("HBONE to {} via {}: {e}", key.target, key.hop);
            log::warn!("{why}");
            let etype = match e {
                ClientError::Refused { status, .. }
                    if status == StatusCode::SERVICE_UNAVAILABLE =>
                {
                    pingora::ErrorType::ConnectRefused
                }
                _ => pingora::ErrorType::ConnectError,
            };
            pingora::Error::explain(etype, why)
        })?;
        let stream = match &self.lease {
            Some(lease) => H2Stream::from_tunnel(tunnel).leased(lease.clone()),
            None => H2Stream::from_tunnel(tunnel),
        };
        Ok(Stream::from(VirtualSocketStream::new(Box::new(stream))))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn forwarded_for_quotes_ipv6() {
        assert_eq!(
            super::forwarded_for("10.1.2.3".parse().unwrap()),
            "for=10.1.2.3"
        );
        assert_eq!(
            super::forwarded_for("fd00::1".parse().unwrap()),
            "for=\"[fd00::1]\""
        );
    }
}
