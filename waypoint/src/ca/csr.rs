//! The key and certificate request sent to the CA, and the stand-in identity the
//! waypoint holds until the CA's first answer.

use crate::identity::{CertBundle, SpiffeId};
use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType, PKCS_ECDSA_P256_SHA256};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A fresh key and a PEM CSR for it naming `id`.
///
/// The key is new for every request: a renewed certificate never shares a key
/// with the one it replaces, and the key never leaves the process.
pub struct Csr {
    pub key: KeyPair,
    pub pem: String,
}

impl Csr {
    pub fn new(id: &SpiffeId) -> Result<Csr, rcgen::Error> {
        // P-256: what istiod and ztunnel use, and cheap to handshake with.
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let pem = params(id)?.serialize_request(&key)?.pem()?;
        Ok(Csr { key, pem })
    }

    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivatePkcs8KeyDer::from(self.key.serialize_der()).into()
    }
}

/// Only the SPIFFE URI SAN: Istio's CAs put the identity there and ignore the
/// subject, and rcgen's default subject ("rcgen self signed cert") would only
/// confuse whoever reads the request.
fn params(id: &SpiffeId) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(rcgen::string::Ia5String::try_from(
        id.to_string(),
    )?)];
    Ok(params)
}

/// A self-signed certificate for `id` that is its own only root.
///
/// Until the CA issues the first certificate the waypoint still needs an identity
/// for its TLS configs, so the data path never has to ask whether it has one. No
/// peer trusts this one, so every handshake fails as it would against a waypoint
/// without a certificate, and it chains to nothing any peer holds, so nobody can
/// present a certificate it accepts. Readiness stays false meanwhile, which keeps
/// ztunnel from sending traffic here at all.
pub fn stand_in(id: &SpiffeId) -> Result<CertBundle, rcgen::Error> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let cert = params(id)?.self_signed(&key)?;
    let der: CertificateDer<'static> = cert.der().clone();
    Ok(CertBundle {
        chain: vec![der.clone()],
        key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        roots: vec![der],
        id: id.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    #[test]
    fn the_request_carries_only_the_spiffe_id_and_a_p256_key() {
        let id = SpiffeId::new("td.example", "apps", "productpage-waypoint");
        let csr = Csr::new(&id).unwrap();
        let parsed = rcgen::CertificateSigningRequestParams::from_pem(&csr.pem)
            .expect("a CSR whose signature verifies");
        assert_eq!(
            parsed.params.subject_alt_names,
            vec![SanType::URI(
                "spiffe://td.example/ns/apps/sa/productpage-waypoint"
                    .try_into()
                    .unwrap()
            )]
        );
        let der = pem_der(&csr.pem);
        let (_, req) = X509CertificationRequest::from_der(&der).unwrap();
        let info = &req.certification_request_info;
        assert_eq!(info.subject.iter_attributes().count(), 0, "empty subject");
        assert_eq!(
            info.subject_pki
                .algorithm
                .parameters
                .as_ref()
                .unwrap()
                .as_oid()
                .unwrap(),
            x509_parser::oid_registry::OID_EC_P256
        );
        assert_eq!(
            req.signature_algorithm.algorithm,
            x509_parser::oid_registry::OID_SIG_ECDSA_WITH_SHA256
        );
    }

    #[test]
    fn every_request_has_a_new_key() {
        let id = SpiffeId::new("cluster.local", "default", "w");
        let (a, b) = (Csr::new(&id).unwrap(), Csr::new(&id).unwrap());
        assert_ne!(a.key.public_key_pem(), b.key.public_key_pem());
    }

    #[test]
    fn the_stand_in_names_the_identity_and_makes_a_server_config() {
        let id = SpiffeId::new("cluster.local", "default", "w");
        let bundle = stand_in(&id).unwrap();
        assert_eq!(crate::identity::spiffe_id_of(&bundle.chain[0]), Some(id));
        crate::hbone::tls::server_config(&bundle).expect("key matches the certificate");
    }

    fn pem_der(pem: &str) -> Vec<u8> {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec()
    }
}
