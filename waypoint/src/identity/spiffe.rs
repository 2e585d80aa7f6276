//! SPIFFE IDs as Istio issues them: `spiffe://<trust-domain>/ns/<ns>/sa/<sa>`.

use std::fmt;
use std::str::FromStr;
use x509_parser::extensions::GeneralName;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    pub trust_domain: String,
    pub namespace: String,
    pub service_account: String,
}

impl SpiffeId {
    pub fn new(trust_domain: &str, namespace: &str, service_account: &str) -> Self {
        SpiffeId {
            trust_domain: trust_domain.into(),
            namespace: namespace.into(),
            service_account: service_account.into(),
        }
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not an Istio SPIFFE ID (want spiffe://<trust-domain>/ns/<ns>/sa/<sa>): {0:?}")]
pub struct InvalidSpiffeId(String);

impl FromStr for SpiffeId {
    type Err = InvalidSpiffeId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidSpiffeId(s.to_string());
        let rest = s.strip_prefix("spiffe://").ok_or_else(bad)?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            [td, "ns", ns, "sa", sa] if !td.is_empty() && !ns.is_empty() && !sa.is_empty() => {
                Ok(SpiffeId::new(td, ns, sa))
            }
            _ => Err(bad()),
        }
    }
}

/// The SPIFFE ID in a DER certificate's URI SANs, if it carries exactly one valid one.
pub fn spiffe_id_of(der: &[u8]) -> Option<SpiffeId> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let mut ids = san.value.general_names.iter().filter_map(|n| match n {
        GeneralName::URI(uri) if uri.starts_with("spiffe://") => uri.parse::<SpiffeId>().ok(),
        _ => None,
    });
    let first = ids.next()?;
    // Two identities in one certificate would make authorization ambiguous.
    ids.next().is_none().then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_istio_ids() {
        let id: SpiffeId = "spiffe://cluster.local/ns/default/sa/bookinfo"
            .parse()
            .unwrap();
        assert_eq!(id, SpiffeId::new("cluster.local", "default", "bookinfo"));
        assert_eq!(
            id.to_string(),
            "spiffe://cluster.local/ns/default/sa/bookinfo"
        );
    }

    #[test]
    fn rejects_other_shapes() {
        for s in [
            "https://cluster.local/ns/a/sa/b",
            "spiffe://cluster.local/ns/a",
            "spiffe://cluster.local/ns//sa/b",
            "spiffe://cluster.local/sa/b/ns/a",
            "spiffe:///ns/a/sa/b",
        ] {
            assert!(s.parse::<SpiffeId>().is_err(), "{s}");
        }
    }
}
