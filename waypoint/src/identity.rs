//! Workload identity: SPIFFE IDs, the certificate files Istio mounts, the store
//! the data path reads them from (fed by the files or by `crate::ca`), and a dev CA.

mod certs;
mod dev_ca;
mod rotation;
mod spiffe;

pub use certs::{load_cert_dir, CertBundle, CERT_CHAIN, KEY, ROOT_CERT};
pub use dev_ca::{write_files, DevCa, IssuedCert};
pub use rotation::{IdentityStore, NotServing, RotationError};
pub use spiffe::{spiffe_id_of, SpiffeId};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no PEM {what} found")]
    Empty { path: PathBuf, what: &'static str },
    #[error("{path}: invalid PEM: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("{path}: the leaf certificate has no SPIFFE URI SAN (spiffe://<trust-domain>/ns/<ns>/sa/<sa>)")]
    NoSpiffeId { path: PathBuf },
    #[error("{path}: key and certificate do not form a usable TLS identity: {message}")]
    Mismatch { path: PathBuf, message: String },
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
}
