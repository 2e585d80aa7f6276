//! The HBONE listener admits only mesh workloads: TLS 1.3 with a client
//! certificate from the mesh CA that carries a SPIFFE ID.

use crate::common::{world::PRODUCTPAGE_VIP, Certs, WaypointProc, World};
use waypoint::client::Tunnel;
use waypoint::hbone::client::HboneClient;
use waypoint::identity::CertBundle;

async fn try_request(wp: &WaypointProc, client: &CertBundle) -> Result<u16, String> {
    let tls = waypoint::hbone::tls::client_config(client, None).map_err(|e| e.to_string())?;
    let hbone = HboneClient::connect(wp.hbone, tls)
        .await
        .map_err(|e| e.to_string())?;
    let mut t = Tunnel::open(&hbone, PRODUCTPAGE_VIP)
        .await
        .map_err(|e| e.to_string())?;
    let r = t
        .get("http://productpage/", &[])
        .await
        .map_err(|e| e.to_string())?;
    Ok(r.status.as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_client_is_admitted() {
    let world = World::productpage().await;
    let certs = Certs::new();
    let wp = WaypointProc::start(world.dir(), &certs.waypoint_dir).await;
    assert_eq!(try_request(&wp, &certs.client()).await, Ok(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_without_certificate_is_refused() {
    let world = World::productpage().await;
    let certs = Certs::new();
    let wp = WaypointProc::start(world.dir(), &certs.waypoint_dir).await;
    // A TLS 1.3 client that trusts the waypoint but presents no certificate.
    let client = certs.client();
    let mut cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(waypoint_accepting_verifier(&client))
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let result = async {
        let hbone = HboneClient::connect(wp.hbone, std::sync::Arc::new(cfg))
            .await
            .map_err(|e| e.to_string())?;
        Tunnel::open(&hbone, PRODUCTPAGE_VIP)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
    .await;
    assert!(
        result.is_err(),
        "a client without a certificate got a tunnel"
    );
    assert_eq!(
        world.requests("productpage-v1-a")
            + world.requests("productpage-v1-b")
            + world.requests("productpage-v2"),
        0
    );
}

/// The project's own server verifier, so the no-certificate client still checks
/// the waypoint properly and only the missing client certificate differs.
fn waypoint_accepting_verifier(
    client: &CertBundle,
) -> std::sync::Arc<dyn rustls::client::danger::ServerCertVerifier> {
    waypoint::hbone::tls::server_verifier(client, None).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_from_another_ca_is_refused() {
    let world = World::productpage().await;
    let certs = Certs::new();
    let wp = WaypointProc::start(world.dir(), &certs.waypoint_dir).await;
    let err = try_request(&wp, &certs.client_from_other_ca())
        .await
        .unwrap_err();
    assert!(!err.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_without_spiffe_id_is_refused() {
    let world = World::productpage().await;
    let certs = Certs::new();
    let wp = WaypointProc::start(world.dir(), &certs.waypoint_dir).await;
    let err = try_request(&wp, &certs.client_without_spiffe())
        .await
        .unwrap_err();
    assert!(!err.is_empty());
    assert!(
        wp.log_contains("no SPIFFE URI SAN").await,
        "log should say why:\n{}",
        wp.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_client_certificate_is_refused() {
    let world = World::productpage().await;
    let certs = Certs::new();
    let wp = WaypointProc::start(world.dir(), &certs.waypoint_dir).await;
    assert!(try_request(&wp, &certs.client_expired()).await.is_err());
    assert!(
        wp.log_contains("certificate expired").await,
        "the log says why:\n{}",
        wp.logs()
    );
}
