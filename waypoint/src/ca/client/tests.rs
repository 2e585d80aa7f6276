//! One call against the in-process CA over real loopback TLS: what it issues,
//! and how each kind of failure comes back.

use super::*;
use crate::ca::args::CaAddress;
use crate::identity::{DevCa, SpiffeId};
use crate::testing::ca_server::TestCa;

const TOKEN: &str = "good-token";

fn id() -> SpiffeId {
    SpiffeId::new("cluster.local", "default", "productpage-waypoint")
}

struct Setup {
    ca: TestCa,
    dir: tempfile::TempDir,
    client: CaClient,
}

async fn setup() -> Setup {
    let ca = TestCa::start().await;
    ca.allow(TOKEN, id());
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("istio-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let client = CaClient {
        config: CaConfig {
            address: ca.address().parse::<CaAddress>().unwrap(),
            root_cert: ca.write_root(dir.path()),
            token_file,
            cluster_id: Some("Kubernetes".into()),
            ttl: Duration::from_secs(600),
            id: id(),
        },
    };
    Setup { ca, dir, client }
}

#[tokio::test]
async fn issues_a_certificate_for_the_identity_chained_to_the_ca() {
    let s = setup().await;
    let bundle = s.client.issue().await.unwrap();
    assert_eq!(bundle.id, id());
    assert_eq!(bundle.chain.len(), 1, "the leaf; the root is not presented");
    let root = CertificateDer::pem_slice_iter(s.ca.root_pem().as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert_eq!(bundle.roots, root);
    let (not_before, not_after) = bundle.validity().unwrap();
    let life = not_after.duration_since(not_before).unwrap();
    assert!(
        life <= Duration::from_secs(601) && life >= Duration::from_secs(598),
        "the requested TTL: {life:?}"
    );
    // The key we generated is the certificate's: TLS accepts the pair.
    crate::hbone::tls::server_config(&bundle).unwrap();
    assert_eq!(s.ca.issued(), 1);
}

#[tokio::test]
async fn a_token_the_ca_does_not_accept_is_a_refusal_with_its_status() {
    let s = setup().await;
    std::fs::write(&s.client.config.token_file, "expired-token").unwrap();
    let err = s.client.issue().await.unwrap_err();
    assert!(
        matches!(
            &err,
            CaError::Refused {
                code: tonic::Code::Unauthenticated,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.result(), "refused");
    assert_eq!(err.grpc_status(), "Unauthenticated");
    assert!(err.to_string().contains("token is not valid"), "{err}");
    // The file is read at every call: a rotated token works at once.
    std::fs::write(&s.client.config.token_file, TOKEN).unwrap();
    s.client.issue().await.unwrap();
}

#[tokio::test]
async fn a_ca_whose_certificate_does_not_chain_to_the_root_fails_tls() {
    let mut s = setup().await;
    let other = DevCa::new("not the CA's root").unwrap();
    let wrong = s.dir.path().join("other-root.pem");
    std::fs::write(&wrong, other.root_pem()).unwrap();
    s.client.config.root_cert = wrong;
    let err = s.client.issue().await.unwrap_err();
    assert!(matches!(err, CaError::Tls { .. }), "{err}");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    assert_eq!(s.ca.issued(), 0);
}

#[tokio::test]
async fn a_ca_that_is_not_listening_is_unreachable() {
    let s = setup().await;
    s.ca.down();
    let err = s.client.issue().await.unwrap_err();
    assert!(matches!(err, CaError::Unreachable { .. }), "{err}");
    s.ca.up().await;
    s.client.issue().await.unwrap();
}

#[tokio::test]
async fn missing_local_files_name_the_file_and_the_flag() {
    let mut s = setup().await;
    s.client.config.token_file = s.dir.path().join("absent");
    let err = s.client.issue().await.unwrap_err();
    assert_eq!(err.result(), "local_error");
    assert!(err.to_string().contains("--ca-token-file"), "{err}");
    let mut s = setup().await;
    s.client.config.root_cert = s.dir.path().join("absent");
    let err = s.client.issue().await.unwrap_err();
    assert!(err.to_string().contains("--ca-root-cert"), "{err}");
}
