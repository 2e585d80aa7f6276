//! Turning the CA's answer into the identity the waypoint serves.
//!
//! `cert_chain` is leaf first, root last, one PEM per entry; a CA that also sends
//! `root_cert` stops the chain at the last intermediate, and an older one may pack
//! several roots into the last entry. The waypoint presents leaf and
//! intermediates, and trusts the roots the CA names (its peers' certificates come
//! from the same CA), falling back to the mounted root when it names none.

use super::proto::IstioCertificateResponse;
use crate::identity::{spiffe_id_of, CertBundle};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::time::SystemTime;

/// The bundle for `key`, or why the response cannot be served.
pub fn bundle(
    response: IstioCertificateResponse,
    key: PrivateKeyDer<'static>,
    mounted_roots: &[CertificateDer<'static>],
    now: SystemTime,
) -> Result<CertBundle, String> {
    let entries = response
        .cert_chain
        .iter()
        .enumerate()
        .map(|(i, pem)| parse(pem).map_err(|e| format!("cert_chain[{i}]: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let named_roots = response
        .root_cert
        .map(|r| r.ca_cert)
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, pem)| parse(pem).map_err(|e| format!("root_cert.ca_cert[{i}]: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let (chain, roots) = match (entries.len(), named_roots.is_empty()) {
        (0, _) => return Err("empty cert_chain".into()),
        (_, false) => (entries.concat(), named_roots.concat()),
        (1, true) => (entries.concat(), mounted_roots.to_vec()),
        (n, true) => (entries[..n - 1].concat(), entries[n - 1].clone()),
    };
    let id = spiffe_id_of(&chain[0]).ok_or(
        "the leaf certificate has no SPIFFE URI SAN (spiffe://<trust-domain>/ns/<ns>/sa/<sa>)",
    )?;
    let bundle = CertBundle {
        chain,
        key,
        roots,
        id,
    };
    match bundle.validity() {
        None => Err("the leaf certificate does not parse".into()),
        Some((_, not_after)) if not_after <= now => Err(format!(
            "the leaf certificate expired at {}",
            crate::ca::show_time(not_after)
        )),
        Some(_) => Ok(bundle),
    }
}

fn parse(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("invalid PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no PEM certificate".into());
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::proto::Roots;
    use crate::identity::{DevCa, SpiffeId};

    struct Issued {
        ca: DevCa,
        leaf: String,
        key: PrivateKeyDer<'static>,
    }

    fn issued() -> Issued {
        let ca = DevCa::new("issued test CA").unwrap();
        let cert = ca
            .issue(&SpiffeId::new("cluster.local", "ns", "sa"))
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
        Issued {
            leaf: cert.chain_pem,
            key,
            ca,
        }
    }

    fn der(pem: &str) -> Vec<CertificateDer<'static>> {
        parse(pem).unwrap()
    }

    fn response(chain: &[&str], roots: Option<&[&str]>) -> IstioCertificateResponse {
        IstioCertificateResponse {
            cert_chain: chain.iter().map(|s| s.to_string()).collect(),
            root_cert: roots.map(|r| Roots {
                ca_cert: r.iter().map(|s| s.to_string()).collect(),
            }),
        }
    }

    #[test]
    fn leaf_then_root_presents_the_leaf_and_trusts_the_root() {
        let i = issued();
        let b = bundle(
            response(&[&i.leaf, i.ca.root_pem()], None),
            i.key,
            &[],
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(b.chain, der(&i.leaf));
        assert_eq!(b.roots, der(i.ca.root_pem()));
        assert_eq!(b.id, SpiffeId::new("cluster.local", "ns", "sa"));
    }

    #[test]
    fn several_roots_packed_in_the_last_entry_are_all_trusted() {
        let i = issued();
        let other = DevCa::new("next root").unwrap();
        let packed = format!("{}{}", i.ca.root_pem(), other.root_pem());
        let b = bundle(
            response(&[&i.leaf, &packed], None),
            i.key,
            &[],
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(b.roots.len(), 2);
        assert_eq!(b.chain.len(), 1);
    }

    #[test]
    fn root_cert_names_the_roots_and_the_whole_chain_is_presented() {
        let i = issued();
        let intermediate = DevCa::new("stand-in intermediate").unwrap();
        let b = bundle(
            response(
                &[&i.leaf, intermediate.root_pem()],
                Some(&[i.ca.root_pem()]),
            ),
            i.key,
            &[],
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(b.chain.len(), 2);
        assert_eq!(b.roots, der(i.ca.root_pem()));
    }

    #[test]
    fn a_lone_leaf_trusts_the_mounted_root() {
        let i = issued();
        let mounted = der(i.ca.root_pem());
        let b = bundle(
            response(&[&i.leaf], None),
            i.key,
            &mounted,
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(b.roots, mounted);
    }

    #[test]
    fn unusable_answers_say_what_is_wrong() {
        let i = issued();
        let now = SystemTime::now();
        let key = || i.key.clone_key();
        let err = |r| bundle(r, key(), &[], now).unwrap_err();
        assert_eq!(err(response(&[], None)), "empty cert_chain");
        assert!(err(response(&["junk", i.ca.root_pem()], None)).starts_with("cert_chain[0]: "));
        let no_spiffe =
            i.ca.issue_with_sans(vec![rcgen::SanType::DnsName("a.b".try_into().unwrap())])
                .unwrap();
        assert!(
            err(response(&[&no_spiffe.chain_pem, i.ca.root_pem()], None))
                .contains("no SPIFFE URI SAN")
        );
        let expired =
            i.ca.issue_expired(&SpiffeId::new("cluster.local", "ns", "sa"))
                .unwrap();
        assert!(err(response(&[&expired.chain_pem, i.ca.root_pem()], None))
            .starts_with("the leaf certificate expired at 2021-01-01"));
    }
}
