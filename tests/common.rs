//! Test support: certificates, manifests, backends and the waypoint process.

pub mod certs;
pub mod envoy;
pub mod ext_authz;
pub mod grpc;
pub mod jwks;
pub mod kube;
pub mod otlp;
pub mod proc;
pub mod rbac;
pub mod world;

pub use certs::Certs;
pub use proc::WaypointProc;
pub use world::World;

use waypoint::client::Tunnel;
use waypoint::hbone::client::HboneClient;
use waypoint::identity::CertBundle;

/// An HBONE connection to the waypoint as `client`.
pub async fn connect(wp: &WaypointProc, client: &CertBundle) -> HboneClient {
    let tls = waypoint::hbone::tls::client_config(client, None).unwrap();
    HboneClient::connect(wp.hbone, tls).await.unwrap()
}

/// A tunnel to `authority` as the test's default client identity.
pub async fn tunnel(wp: &WaypointProc, certs: &Certs, authority: &str) -> Tunnel {
    let client = connect(wp, &certs.client()).await;
    Tunnel::open(&client, authority).await.unwrap()
}

pub fn h(name: &str, value: &str) -> Vec<(String, String)> {
    vec![(name.to_string(), value.to_string())]
}

/// The status of a GET through `t`.
pub async fn status(t: &mut Tunnel, uri: &str) -> http::StatusCode {
    t.get(uri, &[]).await.unwrap().status
}
