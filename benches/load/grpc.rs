//! gRPC unary load: `conns` HTTP/2 connections (or HBONE tunnels, one HTTP/2
//! connection inside each), `streams` calls in flight on each, to the
//! `greeter` Service. Its port is named `grpc`, so the waypoint speaks h2c
//! upstream, and its routing has the seed's shape: metadata `version: v2` → v2,
//! else 90/10 over v1/v2.

use super::driver::{self, Caller, Report};
use super::grpc_echo::{msg, plaintext_channel, tunnel_channel, EchoClient, GrpcBackend};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tonic::Request;
use waypoint::hbone::client::HboneClient;
use waypoint::testing::{pods_yaml, Pod};

pub const VIP: &str = "10.96.3.1:9000";
/// What a plaintext client names as `:authority`, for the waypoint's routing
/// by host; Envoy routes every host alike.
const AUTHORITY: &str = "greeter:9000";

pub const MANIFESTS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: greeter, namespace: default}
spec:
  clusterIP: 10.96.3.1
  ports: [{name: grpc, port: 9000, targetPort: http}]
  selector: {app: greeter}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: greeter, namespace: default}
spec:
  host: greeter
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: greeter, namespace: default}
spec:
  hosts: [greeter]
  http:
  - match: [{headers: {version: {exact: v2}}}]
    route: [{destination: {host: greeter, subset: v2}}]
  - route:
    - {destination: {host: greeter, subset: v1}, weight: 90}
    - {destination: {host: greeter, subset: v2}, weight: 10}
"#;

/// Three tonic `test.Echo` servers, two v1 and one v2, as the seed's pods.
pub struct Backends {
    _servers: Vec<GrpcBackend>,
    /// `(version, address)` of each, for Envoy's clusters.
    pub endpoints: Vec<(&'static str, SocketAddr)>,
    /// Their Pods, for the waypoint's config.
    pub pods: String,
}

impl Backends {
    pub async fn start() -> Backends {
        let specs = [
            ("greeter-v1-a", "v1"),
            ("greeter-v1-b", "v1"),
            ("greeter-v2", "v2"),
        ];
        let mut servers = Vec::new();
        for (name, _) in specs {
            servers.push(GrpcBackend::start(name).await);
        }
        let pods: Vec<Pod<'_>> = specs
            .iter()
            .zip(&servers)
            .map(|((name, version), s)| Pod {
                name,
                app: "greeter",
                version,
                port: s.addr.port(),
            })
            .collect();
        Backends {
            endpoints: specs
                .iter()
                .map(|s| s.1)
                .zip(servers.iter().map(|s| s.addr))
                .collect(),
            pods: pods_yaml(&pods),
            _servers: servers,
        }
    }
}

#[derive(Clone)]
pub enum Scenario {
    Plaintext(SocketAddr),
    Hbone {
        addr: SocketAddr,
        tls: Arc<rustls::ClientConfig>,
    },
}

/// One of a connection's in-flight slots; clones of a client share its
/// connection, and tonic multiplexes their calls as HTTP/2 streams.
struct Slot(EchoClient);

impl Caller for Slot {
    async fn call(&mut self) -> bool {
        self.0.unary(Request::new(msg("ping"))).await.is_ok()
    }
}

pub async fn run(
    scenario: Scenario,
    name: &str,
    (conns, streams): (usize, usize),
    duration: Duration,
    pid: u32,
) -> Report {
    // As for HTTP/1.1: one HBONE connection carries every tunnel.
    let hbone = match &scenario {
        Scenario::Hbone { addr, tls } => {
            Some(HboneClient::connect(*addr, tls.clone()).await.unwrap())
        }
        Scenario::Plaintext(_) => None,
    };
    let mut callers = Vec::new();
    for _ in 0..conns {
        let channel = match &scenario {
            Scenario::Plaintext(addr) => plaintext_channel(*addr, AUTHORITY).await,
            Scenario::Hbone { .. } => tunnel_channel(hbone.as_ref().unwrap(), VIP).await,
        };
        let client = EchoClient::new(channel);
        callers.extend((0..streams).map(|_| Slot(client.clone())));
    }
    driver::closed_loop(name, callers, duration, pid).await
}
