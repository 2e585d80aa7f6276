//! What can go wrong getting a certificate, worded for the operator: each message
//! says which side failed and what to check.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The projected token could not be read (kubelet writes it; the pod spec
    /// mounts it).
    #[error("cannot read the service-account token {path}: {source} (a projected token with audience istio-ca; --ca-token-file)")]
    Token {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot use the CA's root certificate {path}: {message} (--ca-root-cert)")]
    Root { path: PathBuf, message: String },
    #[error("making the key and CSR: {0}")]
    Csr(#[from] rcgen::Error),
    /// No TCP connection, a timeout, or the connection lost mid-call.
    #[error("the CA at {address} is unreachable: {message}")]
    Unreachable { address: String, message: String },
    /// The TLS handshake failed, most often because the CA's serving certificate
    /// does not chain to the mounted root.
    #[error("TLS with the CA at {address} failed: {source} (does --ca-root-cert hold the root that signed the CA's serving certificate?)")]
    Tls {
        address: String,
        source: std::io::Error,
    },
    /// The CA answered with a gRPC error.
    #[error("the CA at {address} refused the request: {code:?}: {message}")]
    Refused {
        address: String,
        code: tonic::Code,
        message: String,
    },
    /// The CA answered OK with something we cannot serve.
    #[error("the CA at {address} sent an unusable certificate: {reason}")]
    BadResponse { address: String, reason: String },
}

impl CaError {
    /// The `result` label of `waypoint_ca_requests_total`.
    pub fn result(&self) -> &'static str {
        match self {
            CaError::Token { .. } | CaError::Root { .. } | CaError::Csr(_) => "local_error",
            CaError::Unreachable { .. } => "unreachable",
            CaError::Tls { .. } => "tls_error",
            CaError::Refused { .. } => "refused",
            CaError::BadResponse { .. } => "bad_response",
        }
    }

    /// The `grpc_status` label: the code the CA refused with, else empty.
    pub fn grpc_status(&self) -> String {
        match self {
            CaError::Refused { code, .. } => format!("{code:?}"),
            _ => String::new(),
        }
    }
}
