//! Per-test certificates: a mesh CA with a waypoint and a client identity, plus the
//! wrong ones the mTLS tests need.

use std::path::PathBuf;
use tempfile::TempDir;
use waypoint::identity::{load_cert_dir, write_files, CertBundle, DevCa, SpiffeId};

pub struct Certs {
    _dir: TempDir,
    pub ca: DevCa,
    pub waypoint_dir: PathBuf,
    pub client_dir: PathBuf,
}

impl Certs {
    pub fn new() -> Certs {
        let dir = tempfile::tempdir().unwrap();
        let ca = DevCa::new("mesh test CA").unwrap();
        let waypoint_dir = dir.path().join("waypoint");
        let client_dir = dir.path().join("client");
        ca.write_cert_dir(&waypoint_dir, &id("productpage-waypoint"))
            .unwrap();
        ca.write_cert_dir(&client_dir, &id("sleep")).unwrap();
        Certs {
            _dir: dir,
            ca,
            waypoint_dir,
            client_dir,
        }
    }

    pub fn client(&self) -> CertBundle {
        load_cert_dir(&self.client_dir).unwrap()
    }

    /// A client from the mesh CA whose SPIFFE id is in `namespace`.
    pub fn client_in(&self, namespace: &str) -> CertBundle {
        let dir = tempfile::tempdir().unwrap();
        let id = SpiffeId::new("cluster.local", namespace, "sleep");
        self.ca.write_cert_dir(dir.path(), &id).unwrap();
        load_cert_dir(dir.path()).unwrap()
    }

    /// A client from the mesh CA as `sa` in `namespace`.
    pub fn client_as(&self, namespace: &str, sa: &str) -> CertBundle {
        let dir = tempfile::tempdir().unwrap();
        let id = SpiffeId::new("cluster.local", namespace, sa);
        self.ca.write_cert_dir(dir.path(), &id).unwrap();
        load_cert_dir(dir.path()).unwrap()
    }

    /// A client certificate from the same CA without any SPIFFE URI SAN.
    pub fn client_without_spiffe(&self) -> CertBundle {
        let dir = tempfile::tempdir().unwrap();
        let issued = self
            .ca
            .issue_with_sans(vec![rcgen::SanType::DnsName(
                "sleep.default.svc".try_into().unwrap(),
            )])
            .unwrap();
        write_files(dir.path(), &issued, self.ca.root_pem()).unwrap();
        // The bundle loader insists on a SPIFFE ID, which is the point of the test:
        // build the bundle by hand from the files.
        bundle_from(dir.path(), &self.client())
    }

    /// A client certificate from the mesh CA that expired in 2021.
    pub fn client_expired(&self) -> CertBundle {
        let dir = tempfile::tempdir().unwrap();
        let issued = self.ca.issue_expired(&id("sleep")).unwrap();
        write_files(dir.path(), &issued, self.ca.root_pem()).unwrap();
        load_cert_dir(dir.path()).unwrap()
    }

    /// A client with a valid-looking SPIFFE identity signed by another CA; it
    /// trusts our roots so only the server's check can reject it.
    pub fn client_from_other_ca(&self) -> CertBundle {
        let other = DevCa::new("attacker CA").unwrap();
        let dir = tempfile::tempdir().unwrap();
        other.write_cert_dir(dir.path(), &id("sleep")).unwrap();
        let mut bundle = load_cert_dir(dir.path()).unwrap();
        bundle.roots = self.client().roots;
        bundle
    }
}

pub fn id(sa: &str) -> SpiffeId {
    SpiffeId::new("cluster.local", "default", sa)
}

fn bundle_from(dir: &std::path::Path, template: &CertBundle) -> CertBundle {
    use rustls_pki_types::pem::PemObject;
    let chain = rustls_pki_types::CertificateDer::pem_file_iter(dir.join("cert-chain.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(dir.join("key.pem")).unwrap();
    CertBundle {
        chain,
        key,
        roots: template.roots.clone(),
        id: template.id.clone(),
    }
}
