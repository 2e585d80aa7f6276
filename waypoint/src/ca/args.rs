//! `waypoint run`'s CA flags, and the choice between the CA and `--cert-dir`.

use crate::identity::SpiffeId;
use std::path::PathBuf;
use std::time::Duration;

/// Istio's CA as a pod reaches it (istiod's gRPC port with TLS).
pub const IN_CLUSTER_CA: &str = "https://istiod.istio-system.svc:15012";

#[derive(clap::Args, Clone, Debug)]
pub struct CaArgs {
    /// Istio's CA (istiod, or cert-manager's istio-csr): https://HOST:PORT, or
    /// HOST:PORT as Istio's CA_ADDR gives it. Default in a pod without --cert-dir:
    /// https://istiod.istio-system.svc:15012.
    #[arg(long, env = "CA_ADDRESS", conflicts_with = "cert_dir")]
    pub ca_address: Option<String>,
    /// The root that signed the CA's serving certificate (Istio's
    /// istio-ca-root-cert ConfigMap). Re-read for every request.
    #[arg(
        long,
        env = "WAYPOINT_CA_ROOT_CERT",
        default_value = "/var/run/secrets/istio/root-cert.pem"
    )]
    pub ca_root_cert: PathBuf,
    /// The projected service-account token (audience istio-ca) sent as the bearer
    /// credential. Re-read for every request, as kubelet rotates it.
    #[arg(
        long,
        env = "WAYPOINT_CA_TOKEN_FILE",
        default_value = "/var/run/secrets/tokens/istio-token"
    )]
    pub ca_token_file: PathBuf,
    /// Requested certificate lifetime, seconds (the CA may shorten it). Renewal
    /// starts at half of the lifetime the CA grants.
    #[arg(long, env = "WAYPOINT_CERT_TTL", default_value_t = 86400)]
    pub cert_ttl: u64,
    /// Sent to the CA as the `clusterid` header (multi-cluster meshes).
    #[arg(long, env = "ISTIO_META_CLUSTER_ID")]
    pub cluster_id: Option<String>,
    /// This pod's namespace, for the SPIFFE ID in the request.
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: Option<String>,
    /// This pod's service account, for the SPIFFE ID in the request.
    #[arg(long, env = "SERVICE_ACCOUNT")]
    pub service_account: Option<String>,
}

/// Where a pod finds its service-account token: present means in a cluster.
const IN_CLUSTER_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// Whether this process runs in a pod (the same test as the config source's).
pub fn in_pod() -> bool {
    std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
        && std::path::Path::new(IN_CLUSTER_TOKEN).exists()
}

/// `--ca-address`, checked: the URI to dial and the name to verify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaAddress {
    pub uri: http::Uri,
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for CaAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.uri)
    }
}

impl std::str::FromStr for CaAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let with_scheme = if s.contains("://") {
            s.to_string()
        } else {
            format!("https://{s}")
        };
        let uri: http::Uri = with_scheme
            .parse()
            .map_err(|e| format!("--ca-address {s:?}: {e}"))?;
        if uri.scheme_str() != Some("https") {
            return Err(format!(
                "--ca-address {s:?}: the CA is only spoken to over TLS (https://)"
            ));
        }
        let host = uri
            .host()
            .ok_or_else(|| format!("--ca-address {s:?}: no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(443);
        Ok(CaAddress { uri, host, port })
    }
}

/// Everything the CA client needs, resolved from the flags.
#[derive(Clone, Debug)]
pub struct CaConfig {
    pub address: CaAddress,
    pub root_cert: PathBuf,
    pub token_file: PathBuf,
    pub cluster_id: Option<String>,
    pub ttl: Duration,
    pub id: SpiffeId,
}

impl CaArgs {
    /// The CA to use, if any: `--ca-address`, else Istio's in a pod unless
    /// `--cert-dir` was given; `None` keeps file mode.
    pub fn resolve(
        &self,
        cert_dir_given: bool,
        in_pod: bool,
        trust_domain: &str,
    ) -> Result<Option<CaConfig>, String> {
        let address = match &self.ca_address {
            Some(a) => a.clone(),
            None if in_pod && !cert_dir_given => IN_CLUSTER_CA.to_string(),
            None => return Ok(None),
        };
        let address = address.parse::<CaAddress>()?;
        let need = |v: &Option<String>, what: &str| {
            v.clone()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("certificates from the CA need this pod's {what}"))
        };
        let namespace = need(&self.namespace, "namespace (--namespace or POD_NAMESPACE)")?;
        let sa = need(
            &self.service_account,
            "service account (--service-account or SERVICE_ACCOUNT)",
        )?;
        if self.cert_ttl == 0 {
            return Err("--cert-ttl must be at least one second".into());
        }
        Ok(Some(CaConfig {
            address,
            root_cert: self.ca_root_cert.clone(),
            token_file: self.ca_token_file.clone(),
            cluster_id: self.cluster_id.clone().filter(|c| !c.is_empty()),
            ttl: Duration::from_secs(self.cert_ttl),
            id: SpiffeId::new(trust_domain, &namespace, &sa),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_take_istios_form_and_ours() {
        let a: CaAddress = "istiod.istio-system.svc:15012".parse().unwrap();
        assert_eq!(a.to_string(), "https://istiod.istio-system.svc:15012/");
        assert_eq!(
            (a.host.as_str(), a.port),
            ("istiod.istio-system.svc", 15012)
        );
        let b: CaAddress = "https://[::1]:8443".parse().unwrap();
        assert_eq!((b.host.as_str(), b.port), ("::1", 8443));
        let c: CaAddress = "https://ca.example".parse().unwrap();
        assert_eq!(c.port, 443);
        assert!("http://istiod:15010"
            .parse::<CaAddress>()
            .unwrap_err()
            .contains("only spoken to over TLS"));
    }

    fn args(address: Option<&str>) -> CaArgs {
        CaArgs {
            ca_address: address.map(str::to_string),
            ca_root_cert: "/r".into(),
            ca_token_file: "/t".into(),
            cert_ttl: 60,
            cluster_id: Some(String::new()),
            namespace: Some("apps".into()),
            service_account: Some("wp".into()),
        }
    }

    #[test]
    fn an_address_means_the_ca_with_this_pods_identity() {
        let c = args(Some("127.0.0.1:1"))
            .resolve(false, false, "td")
            .unwrap()
            .unwrap();
        assert_eq!(c.id, SpiffeId::new("td", "apps", "wp"));
        assert_eq!(c.cluster_id, None, "an empty cluster id is not sent");
        assert_eq!(c.ttl, Duration::from_secs(60));
    }

    #[test]
    fn without_an_identity_the_ca_cannot_be_asked() {
        let mut a = args(Some("127.0.0.1:1"));
        a.service_account = None;
        assert!(a
            .resolve(false, false, "td")
            .unwrap_err()
            .contains("SERVICE_ACCOUNT"));
    }

    #[test]
    fn without_an_address_a_pod_asks_istiod_unless_given_a_cert_dir() {
        let in_pod = args(None).resolve(false, true, "td").unwrap().unwrap();
        assert_eq!(in_pod.address, IN_CLUSTER_CA.parse().unwrap());
        assert!(args(None).resolve(true, true, "td").unwrap().is_none());
        assert!(args(None).resolve(false, false, "td").unwrap().is_none());
        assert!(args(None).resolve(true, false, "td").unwrap().is_none());
    }
}
