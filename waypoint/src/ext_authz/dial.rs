//! Reaching an authorizer: an endpoint picked by the provider's cluster (its
//! load balancing and outlier ejection, like any backend), and connections
//! kept per endpoint: one multiplexed gRPC channel, or idle HTTP/1.1
//! connections, so a check costs a round trip, not a handshake.

use crate::hbone::idle::TunnelKey;
use crate::hbone::H2Stream;
use crate::proxy::HboneUpstream;
use crate::state::Runtime;
use crate::tcp::Io;
use crate::upstream::ActiveTry;
use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use tonic::transport::Channel;
use waypoint_ir::ExtAuthzProvider;

/// Endpoints remembered at most; beyond, the caches start over (endpoints
/// come and go with their pods).
const REMEMBERED: usize = 64;

/// Idle HTTP/1.1 connections kept per endpoint; more are closed when done.
const IDLE_PER_ENDPOINT: usize = 16;

/// An endpoint's address and, for a mesh endpoint, its tunnel.
type Key = (SocketAddr, Option<TunnelKey>);

pub struct Dialer {
    hbone: Option<HboneUpstream>,
    grpc: Mutex<HashMap<Key, Channel>>,
    http: Mutex<HashMap<Key, Vec<SendRequest<Full<Bytes>>>>>,
}

/// The endpoint a check goes to, counted in flight while it lasts.
pub struct Picked {
    key: Key,
    _active: ActiveTry,
}

impl Dialer {
    pub fn new(hbone: Option<HboneUpstream>) -> Self {
        Dialer {
            hbone,
            grpc: Mutex::default(),
            http: Mutex::default(),
        }
    }

    pub fn endpoint(&self, rt: &Runtime, p: &ExtAuthzProvider) -> Result<Picked, String> {
        let svc = rt.snapshot.service(p.service);
        let none = || format!("no healthy endpoint of {}:{}", svc.hostname, p.port);
        let cluster = rt
            .upstreams
            .cluster((p.service, None, p.port))
            .ok_or_else(none)?;
        let (active, addr) = cluster.pick(&[]).ok_or_else(none)?;
        let ep = svc.endpoint(cluster.endpoints[active.slot()].0);
        let tunnel = self.hbone.as_ref().and_then(|h| h.key(ep, addr, None));
        Ok(Picked {
            key: (addr, tunnel),
            _active: active,
        })
    }

    /// The endpoint's gRPC channel; it connects when first used, and again
    /// after its connection breaks.
    pub fn grpc(&self, rt: &Runtime, p: &ExtAuthzProvider, to: &Picked) -> Channel {
        let mut channels = self.grpc.lock().expect("ext_authz channels");
        if let Some(c) = channels.get(&to.key) {
            return c.clone();
        }
        if channels.len() >= REMEMBERED {
            channels.clear();
        }
        let hbone = self.hbone.clone();
        let key = to.key.clone();
        let connector = tower::service_fn(move |_: ::http::Uri| {
            let (hbone, key) = (hbone.clone(), key.clone());
            async move { open(hbone.as_ref(), &key).await.map(TokioIo::new) }
        });
        let host = &rt.snapshot.service(p.service).hostname;
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{host}:{}", p.port))
            .unwrap_or_else(|_| tonic::transport::Endpoint::from_static("http://ext-authz"))
            .connect_with_connector_lazy(connector);
        channels.insert(to.key.clone(), channel.clone());
        channel
    }

    /// An idle HTTP/1.1 connection to the endpoint, or a new one.
    pub async fn http(&self, to: &Picked) -> Result<SendRequest<Full<Bytes>>, String> {
        let idle = {
            let mut idle = self.http.lock().expect("ext_authz connections");
            idle.get_mut(&to.key).and_then(|list| {
                list.retain(|s| !s.is_closed());
                list.pop()
            })
        };
        if let Some(sender) = idle {
            return Ok(sender);
        }
        let io = open(self.hbone.as_ref(), &to.key).await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| format!("HTTP/1.1 to the authorizer: {e}"))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                log::debug!("ext_authz: connection ended: {e}");
            }
        });
        Ok(sender)
    }

    /// Keeps a connection whose exchange completed for the next check.
    pub fn give_back(&self, to: &Picked, sender: SendRequest<Full<Bytes>>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.http.lock().expect("ext_authz connections");
        if idle.len() >= REMEMBERED && !idle.contains_key(&to.key) {
            idle.clear();
        }
        // The key (with its tunnel's identity) is cloned only for a new endpoint.
        match idle.get_mut(&to.key) {
            Some(list) if list.len() >= IDLE_PER_ENDPOINT => {}
            Some(list) => list.push(sender),
            None => {
                idle.insert(to.key.clone(), vec![sender]);
            }
        }
    }
}

/// A byte stream to the endpoint: a tunnel through its node's HBONE server,
/// or TCP.
async fn open(hbone: Option<&HboneUpstream>, key: &Key) -> Result<Box<dyn Io>, String> {
    match (hbone, &key.1) {
        (Some(hbone), Some(tunnel)) => {
            let headers = crate::hbone::pool::tunnel_headers(tunnel);
            let t = hbone
                .pool
                .open_fresh(tunnel, &headers)
                .await
                .map_err(|e| format!("HBONE to {}: {e}", key.0))?;
            Ok(Box::new(H2Stream::from_tunnel(t)))
        }
        _ => {
            let tcp = tokio::net::TcpStream::connect(key.0)
                .await
                .map_err(|e| format!("connecting to {}: {e}", key.0))?;
            let _ = tcp.set_nodelay(true);
            Ok(Box::new(tcp))
        }
    }
}
