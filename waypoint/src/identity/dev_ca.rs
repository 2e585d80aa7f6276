//! A throw-away certificate authority for the demo and the tests: it issues
//! workload certificates shaped like istiod's (a SPIFFE URI SAN, client and server
//! auth), so the real TLS code paths run without a cluster.

use super::{IdentityError, SpiffeId, CERT_CHAIN, KEY, ROOT_CERT};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::path::Path;

pub struct DevCa {
    issuer: Issuer<'static, KeyPair>,
    root_pem: String,
}

/// PEM text of one issued workload identity.
pub struct IssuedCert {
    pub chain_pem: String,
    pub key_pem: String,
}

impl DevCa {
    pub fn new(name: &str) -> Result<Self, IdentityError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::OrganizationName, name);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let root = params.self_signed(&key)?;
        Ok(DevCa {
            root_pem: root.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    /// A workload certificate for `id`.
    pub fn issue(&self, id: &SpiffeId) -> Result<IssuedCert, IdentityError> {
        let uri = rcgen::string::Ia5String::try_from(id.to_string())?;
        self.issue_with_sans(vec![SanType::URI(uri)])
    }

    /// A certificate for `id` that expired in 2021 (for tests of expiry).
    pub fn issue_expired(&self, id: &SpiffeId) -> Result<IssuedCert, IdentityError> {
        let uri = rcgen::string::Ia5String::try_from(id.to_string())?;
        self.issue_inner(vec![SanType::URI(uri)], true)
    }

    /// A certificate with arbitrary SANs (the tests use one without a SPIFFE ID).
    pub fn issue_with_sans(&self, sans: Vec<SanType>) -> Result<IssuedCert, IdentityError> {
        self.issue_inner(sans, false)
    }

    fn issue_inner(&self, sans: Vec<SanType>, expired: bool) -> Result<IssuedCert, IdentityError> {
        let key = KeyPair::generate()?;
        let mut params = leaf(sans)?;
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            chain_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Signs a PEM CSR as Istio's CA does: the public key and nothing else comes
    /// from the request; the identity is `id` (istiod takes it from the caller's
    /// token) and the certificate is valid from now until `not_after`.
    pub fn sign_request(
        &self,
        csr_pem: &str,
        id: &SpiffeId,
        not_after: std::time::SystemTime,
    ) -> Result<String, IdentityError> {
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)?;
        let uri = rcgen::string::Ia5String::try_from(id.to_string())?;
        let mut params = leaf(vec![SanType::URI(uri)])?;
        params.not_before = std::time::SystemTime::now().into();
        params.not_after = not_after.into();
        csr.params = params;
        Ok(csr.signed_by(&self.issuer)?.pem())
    }

    /// Writes `cert-chain.pem`, `key.pem` and `root-cert.pem` for `id` into `dir`.
    pub fn write_cert_dir(&self, dir: &Path, id: &SpiffeId) -> Result<(), IdentityError> {
        let issued = self.issue(id)?;
        write_files(dir, &issued, &self.root_pem)
    }
}

pub fn write_files(dir: &Path, issued: &IssuedCert, root_pem: &str) -> Result<(), IdentityError> {
    std::fs::create_dir_all(dir).map_err(|source| IdentityError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    for (name, text) in [
        (CERT_CHAIN, issued.chain_pem.as_str()),
        (KEY, issued.key_pem.as_str()),
        (ROOT_CERT, root_pem),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|source| IdentityError::Read { path, source })?;
    }
    Ok(())
}

/// A workload certificate's parameters: these SANs, for both ends of mTLS.
fn leaf(sans: Vec<SanType>) -> Result<CertificateParams, IdentityError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.subject_alt_names = sans;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    Ok(params)
}
