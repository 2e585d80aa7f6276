//! Loading the certificate files Istio mounts into a waypoint: `cert-chain.pem`,
//! `key.pem` and `root-cert.pem`.

use super::{spiffe_id_of, IdentityError, SpiffeId};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const CERT_CHAIN: &str = "cert-chain.pem";
pub const KEY: &str = "key.pem";
pub const ROOT_CERT: &str = "root-cert.pem";

/// A workload's TLS identity: its chain (leaf first), key, the roots it trusts,
/// and the SPIFFE ID its leaf carries.
#[derive(Debug)]
pub struct CertBundle {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub roots: Vec<CertificateDer<'static>>,
    pub id: SpiffeId,
}

impl Clone for CertBundle {
    fn clone(&self) -> Self {
        CertBundle {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            roots: self.roots.clone(),
            id: self.id.clone(),
        }
    }
}

impl CertBundle {
    /// Builds a bundle from PEM text, checking what TLS would only find out at the
    /// first handshake: a leaf with a SPIFFE ID, a key that parses, some roots.
    pub fn from_pem(
        dir: &Path,
        chain_pem: &[u8],
        key_pem: &[u8],
        roots_pem: &[u8],
    ) -> Result<Self, IdentityError> {
        let chain = certs(&dir.join(CERT_CHAIN), chain_pem, "certificate")?;
        let roots = certs(&dir.join(ROOT_CERT), roots_pem, "root certificate")?;
        let key_path = dir.join(KEY);
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
            rustls_pki_types::pem::Error::NoItemsFound => IdentityError::Empty {
                path: key_path.clone(),
                what: "private key",
            },
            e => IdentityError::Pem {
                path: key_path.clone(),
                message: e.to_string(),
            },
        })?;
        let id = spiffe_id_of(&chain[0]).ok_or_else(|| IdentityError::NoSpiffeId {
            path: dir.join(CERT_CHAIN),
        })?;
        Ok(CertBundle {
            chain,
            key,
            roots,
            id,
        })
    }
}

impl CertBundle {
    /// The leaf's `notBefore` and `notAfter`, if its DER parses.
    pub fn validity(&self) -> Option<(SystemTime, SystemTime)> {
        let (_, leaf) = x509_parser::parse_x509_certificate(&self.chain[0]).ok()?;
        let at = |t: x509_parser::time::ASN1Time| {
            let secs = u64::try_from(t.timestamp()).ok()?;
            Some(UNIX_EPOCH + Duration::from_secs(secs))
        };
        Some((
            at(leaf.validity().not_before)?,
            at(leaf.validity().not_after)?,
        ))
    }
}

fn certs(
    path: &Path,
    pem: &[u8],
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, IdentityError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| IdentityError::Pem {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(IdentityError::Empty {
            path: path.to_path_buf(),
            what,
        });
    }
    Ok(certs)
}

/// Reads the three files from `dir`.
pub fn load_cert_dir(dir: &Path) -> Result<CertBundle, IdentityError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|source| IdentityError::Read { path, source })
    };
    CertBundle::from_pem(dir, &read(CERT_CHAIN)?, &read(KEY)?, &read(ROOT_CERT)?)
}
