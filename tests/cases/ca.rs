//! Certificates from Istio's CA, through the real binary: the waypoint asks the
//! in-process CA (`waypoint::testing::ca_server`) over gRPC with TLS, serves
//! what it issues, renews it under load, and says in readiness, logs and metrics
//! when it cannot get one.

use super::telemetry::{scrape, value};
use crate::common::certs::id;
use crate::common::world::PRODUCTPAGE_VIP;
use crate::common::{WaypointProc, World};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tempfile::TempDir;
use waypoint::client::Tunnel;
use waypoint::hbone::client::HboneClient;
use waypoint::identity::{load_cert_dir, spiffe_id_of, CertBundle, DevCa, SpiffeId};
use waypoint::testing::ca_server::TestCa;

const TOKEN: &str = "the-waypoints-token";

/// A CA that knows the waypoint's token, the files the waypoint reads, and a
/// client identity from the same root.
struct Mesh {
    ca: TestCa,
    dir: TempDir,
    root: PathBuf,
    token: PathBuf,
    client: CertBundle,
}

impl Mesh {
    /// The CA exists and knows the token, but listens only after `ca.up()`.
    fn new() -> Mesh {
        let ca = TestCa::new();
        ca.allow(TOKEN, waypoint_id());
        let dir = tempfile::tempdir().unwrap();
        let root = ca.write_root(dir.path());
        let token = dir.path().join("istio-token");
        std::fs::write(&token, TOKEN).unwrap();
        let client_dir = dir.path().join("client");
        ca.dev_ca()
            .write_cert_dir(&client_dir, &id("sleep"))
            .unwrap();
        let client = load_cert_dir(&client_dir).unwrap();
        Mesh {
            ca,
            dir,
            root,
            token,
            client,
        }
    }

    async fn up() -> Mesh {
        let mesh = Mesh::new();
        mesh.ca.up().await;
        mesh
    }

    /// The waypoint pointed at this CA, its identity from the env Istio's
    /// waypoint Deployment sets.
    async fn waypoint(&self, world: &World) -> WaypointProc {
        self.waypoint_with_root(world, &self.root).await
    }

    async fn waypoint_with_root(&self, world: &World, root: &std::path::Path) -> WaypointProc {
        let (address, root, token) = (
            self.ca.address(),
            root.display().to_string(),
            self.token.display().to_string(),
        );
        WaypointProc::start_ca(
            world.dir(),
            &[
                "--ca-address",
                &address,
                "--ca-root-cert",
                &root,
                "--ca-token-file",
                &token,
            ],
            &[
                ("POD_NAMESPACE", "default"),
                ("SERVICE_ACCOUNT", "productpage-waypoint"),
            ],
        )
        .await
    }
}

fn waypoint_id() -> SpiffeId {
    id("productpage-waypoint")
}

/// The certificates the waypoint presents in a fresh handshake, checked on the
/// way (chain to the mesh root, SPIFFE ID) by the HBONE client's verifier.
async fn presented(wp: &WaypointProc, client: &CertBundle) -> Vec<Vec<u8>> {
    let tls = waypoint::hbone::tls::client_config(client, Some(waypoint_id())).unwrap();
    let tcp = tokio::net::TcpStream::connect(wp.hbone).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("waypoint").unwrap();
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .unwrap();
    let certs = stream.get_ref().1.peer_certificates().unwrap();
    certs.iter().map(|c| c.to_vec()).collect()
}

async fn get_productpage(client: &HboneClient) -> Result<u16, String> {
    let mut t = Tunnel::open(client, PRODUCTPAGE_VIP)
        .await
        .map_err(|e| e.to_string())?;
    t.get("http://productpage/", &[])
        .await
        .map(|r| r.status.as_u16())
        .map_err(|e| e.to_string())
}

async fn connect(wp: &WaypointProc, client: &CertBundle) -> HboneClient {
    let tls = waypoint::hbone::tls::client_config(client, Some(waypoint_id())).unwrap();
    HboneClient::connect(wp.hbone, tls).await.unwrap()
}

/// Asserts `/healthz/ready` stays 503 for `period`.
async fn stays_unready(wp: &WaypointProc, period: Duration) {
    let until = Instant::now() + period;
    while Instant::now() < until {
        assert!(
            !wp.ready().await,
            "ready without a certificate:\n{}",
            wp.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (up to 10 s) for a metric sample to reach `at_least`.
async fn metric_reaches(wp: &WaypointProc, name: &str, labels: &[(&str, &str)], at_least: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = value(&scrape(wp.admin).await, name, labels);
        if v >= at_least {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}{labels:?} = {v}, wanted {at_least}\n{}",
            wp.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_waypoint_serves_the_certificate_the_ca_issued() {
    let world = World::productpage().await;
    let mesh = Mesh::up().await;
    let wp = mesh.waypoint(&world).await;
    wp.until_ready().await;

    let chain = presented(&wp, &mesh.client).await;
    assert_eq!(chain.len(), 1, "the leaf, without the root");
    assert_eq!(spiffe_id_of(&chain[0]), Some(waypoint_id()));
    let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
    let root_der = {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::from_pem_slice(mesh.ca.root_pem().as_bytes()).unwrap()
    };
    let (_, root) = x509_parser::parse_x509_certificate(&root_der).unwrap();
    leaf.verify_signature(Some(root.public_key()))
        .expect("signed by the test CA");

    let client = connect(&wp, &mesh.client).await;
    assert_eq!(get_productpage(&client).await, Ok(200));

    let s = scrape(wp.admin).await;
    assert_eq!(
        value(&s, "waypoint_ca_requests_total", &[("result", "ok")]),
        1.0
    );
    let expiry = value(&s, "waypoint_certificate_expiry_timestamp_seconds", &[]);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        expiry > now + 3000.0 && expiry < now + 3700.0,
        "an hour ahead: {expiry} vs {now}"
    );
    assert!(wp.logs().contains(
        "certificate for spiffe://cluster.local/ns/default/sa/productpage-waypoint from the CA"
    ));
    assert_eq!(mesh.ca.issued(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_at_half_life_fails_no_request_under_load() {
    let world = World::productpage().await;
    let mesh = Mesh::up().await;
    // Renewed every three seconds or so: short enough for three renewals in a
    // test, with seconds of slack before expiry on a busy machine.
    mesh.ca.set_validity(Duration::from_secs(6));
    let wp = mesh.waypoint(&world).await;
    wp.until_ready().await;
    let first = presented(&wp, &mesh.client).await;
    let old = connect(&wp, &mesh.client).await;

    // New connections and tunnels all the while, as in the file-rotation test.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (stop, hbone, client) = (stop.clone(), wp.hbone, mesh.client.clone());
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let tls =
                    waypoint::hbone::tls::client_config(&client, Some(waypoint_id())).unwrap();
                let result = match HboneClient::connect(hbone, tls).await {
                    Ok(c) => get_productpage(&c).await,
                    Err(e) => Err(e.to_string()),
                };
                match result {
                    Ok(200) => ok += 1,
                    other => failed.push(format!("{other:?}")),
                }
            }
            (ok, failed)
        })
    };
    // Three renewals' worth, well past the first certificate's expiry.
    let issued_before = mesh.ca.issued();
    let deadline = Instant::now() + Duration::from_secs(20);
    while mesh.ca.issued() < issued_before + 3 {
        assert!(Instant::now() < deadline, "not renewed:\n{}", wp.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = load.await.unwrap();
    assert!(
        failed.is_empty(),
        "requests failed during renewals: {failed:?}"
    );
    assert!(ok > 10, "the load ran ({ok} requests)");

    let now = presented(&wp, &mesh.client).await;
    assert_ne!(
        first[0], now[0],
        "new handshakes get the renewed certificate"
    );
    assert_eq!(spiffe_id_of(&now[0]), Some(waypoint_id()));
    // The connection made with the first certificate, since expired, lives on.
    assert_eq!(get_productpage(&old).await, Ok(200));
    assert!(wp.ready().await);
    let renewals = value(
        &scrape(wp.admin).await,
        "waypoint_ca_requests_total",
        &[("result", "ok")],
    );
    assert!(renewals >= 4.0, "{renewals}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_down_at_start_is_waited_for() {
    let world = World::productpage().await;
    let mesh = Mesh::new();
    let wp = mesh.waypoint(&world).await;
    stays_unready(&wp, Duration::from_secs(2)).await;
    assert!(
        wp.log_contains(&format!("the CA at {}/ is unreachable", mesh.ca.address()))
            .await,
        "{}",
        wp.logs()
    );
    assert!(wp.logs().contains("no certificate yet; retrying in"));
    metric_reaches(
        &wp,
        "waypoint_ca_requests_total",
        &[("result", "unreachable")],
        2.0,
    )
    .await;
    assert!(!wp.ready().await);

    mesh.ca.up().await;
    wp.until_ready().await;
    let client = connect(&wp, &mesh.client).await;
    assert_eq!(get_productpage(&client).await, Ok(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_not_signed_by_the_mounted_root_is_refused() {
    let world = World::productpage().await;
    let mesh = Mesh::up().await;
    let other = DevCa::new("some other mesh").unwrap();
    let wrong = mesh.dir.path().join("other-root.pem");
    std::fs::write(&wrong, other.root_pem()).unwrap();
    let wp = mesh.waypoint_with_root(&world, &wrong).await;

    stays_unready(&wp, Duration::from_secs(3)).await;
    let logs = wp.logs();
    assert!(logs.contains("TLS with the CA at"), "{logs}");
    assert!(logs.contains("UnknownIssuer"), "{logs}");
    assert!(logs.contains("--ca-root-cert"), "{logs}");
    metric_reaches(
        &wp,
        "waypoint_ca_requests_total",
        &[("result", "tls_error")],
        1.0,
    )
    .await;
    assert_eq!(mesh.ca.issued(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_the_ca_rejects_is_reported_and_a_new_one_is_used() {
    let world = World::productpage().await;
    let mesh = Mesh::up().await;
    std::fs::write(&mesh.token, "an-expired-token").unwrap();
    let wp = mesh.waypoint(&world).await;

    assert!(
        wp.log_contains("refused the request: Unauthenticated: authenticate failed")
            .await,
        "{}",
        wp.logs()
    );
    metric_reaches(
        &wp,
        "waypoint_ca_requests_total",
        &[("result", "refused"), ("grpc_status", "Unauthenticated")],
        1.0,
    )
    .await;
    assert!(!wp.ready().await);
    assert!(mesh.ca.refused() >= 1);

    // kubelet rotates the projected token: the next retry reads the new one.
    std::fs::write(&mesh.token, TOKEN).unwrap();
    wp.until_ready().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_makes_the_waypoint_unready_until_renewed() {
    let world = World::productpage().await;
    let mesh = Mesh::up().await;
    mesh.ca.set_validity(Duration::from_secs(3));
    let wp = mesh.waypoint(&world).await;
    wp.until_ready().await;
    mesh.ca.down();

    let deadline = Instant::now() + Duration::from_secs(10);
    while wp.ready().await {
        assert!(Instant::now() < deadline, "still ready:\n{}", wp.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        wp.log_contains("the certificate expired at").await,
        "{}",
        wp.logs()
    );

    mesh.ca.up().await;
    wp.until_ready().await;
}
