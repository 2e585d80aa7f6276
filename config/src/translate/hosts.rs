//! Host names: Istio's short-name resolution and the snapshot's lookup indexes.

use super::Cx;
use crate::Diagnostic;
use std::collections::HashMap;
use waypoint_ir::{Service, ServiceIdx, Snapshot};

/// FQDN (or ServiceEntry host) → service, for resolving names in routing resources.
pub struct HostIndex {
    by_fqdn: HashMap<String, ServiceIdx>,
    by_ns_name: HashMap<(String, String), ServiceIdx>,
}

impl HostIndex {
    pub fn build(services: &[Service]) -> Self {
        // Sized up front: at 10,000 services, growing tables (each a rehash
        // of every key) took a tenth of translation.
        let mut by_fqdn = HashMap::with_capacity(services.len());
        let mut by_ns_name = HashMap::with_capacity(services.len());
        for (i, s) in services.iter().enumerate() {
            by_fqdn
                .entry(s.hostname.to_ascii_lowercase())
                .or_insert(ServiceIdx(i));
            if s.source.kind == waypoint_ir::ResourceKind::Service {
                by_ns_name.insert((s.namespace.clone(), s.name.clone()), ServiceIdx(i));
            }
        }
        HostIndex {
            by_fqdn,
            by_ns_name,
        }
    }

    /// Istio's rule: a name without dots is short for `name.<namespace>.svc.<domain>`;
    /// anything with a dot is taken as written.
    pub fn resolve(&self, host: &str, namespace: &str, cluster_domain: &str) -> Option<ServiceIdx> {
        let host = host.to_ascii_lowercase();
        if host.contains('.') {
            self.by_fqdn.get(&host).copied()
        } else {
            self.by_fqdn
                .get(&format!("{host}.{namespace}.svc.{cluster_domain}"))
                .copied()
        }
    }

    /// Why `host` did not resolve, with the fix when it is a partial name:
    /// Istio reads `name.ns` and `name.ns.svc` as fully qualified, not as short.
    pub fn unknown(&self, host: &str, cluster_domain: &str) -> String {
        let host_lc = host.to_ascii_lowercase();
        let dots = host_lc.matches('.').count();
        let candidates = [
            format!("{host_lc}.svc.{cluster_domain}"),
            format!("{host_lc}.{cluster_domain}"),
        ];
        match candidates
            .iter()
            .find(|c| (1..=2).contains(&dots) && self.by_fqdn.contains_key(c.as_str()))
        {
            Some(fqdn) => format!(
                "no service {host:?} is known (Istio takes a name with a dot as fully qualified; write {fqdn:?} or the short name)"
            ),
            None => format!("no service {host:?} is known"),
        }
    }

    /// A Kubernetes Service by namespace and name (Gateway API references).
    pub fn service(&self, namespace: &str, name: &str) -> Option<ServiceIdx> {
        self.by_ns_name
            .get(&(namespace.to_string(), name.to_string()))
            .copied()
    }
}

/// Fills `by_vip`, `by_workload` and `by_host`.
/// `files[i]` is the file service `i` came from.
pub fn index(cx: &mut Cx<'_>, snapshot: &mut Snapshot, files: &[String]) {
    snapshot.index_workloads();
    let services = &snapshot.services;
    let vips = services.iter().map(|s| s.addresses.len() * s.ports.len());
    snapshot.by_vip.reserve(vips.sum());
    // Four names for a Kubernetes Service (see `aliases`), one for the rest.
    snapshot.by_host.reserve(services.len() * 4);
    for (i, svc) in snapshot.services.iter().enumerate() {
        let idx = ServiceIdx(i);
        for addr in &svc.addresses {
            for port in &svc.ports {
                let key = std::net::SocketAddr::new(*addr, port.port);
                if let Some((other, _)) = snapshot.by_vip.get(&key) {
                    let other = &snapshot.services[other.0];
                    cx.diags.push(Diagnostic::warning(
                        &files[i],
                        Some(&svc.source),
                        "",
                        format!(
                            "address {key} is already {}'s; ignoring it here",
                            other.source
                        ),
                    ));
                    continue;
                }
                snapshot.by_vip.insert(key, (idx, port.port));
            }
        }
        for alias in aliases(svc, &cx.opts.cluster_domain) {
            // Short names are ambiguous across namespaces; the first service in
            // (namespace, name) order keeps the short name.
            match snapshot.by_host.get(&alias) {
                None => {
                    snapshot.by_host.insert(alias, idx);
                }
                Some(&other) if other != idx => cx.diags.push(Diagnostic::warning(
                    &files[i],
                    Some(&svc.source),
                    "",
                    format!(
                        "host {alias:?} already names {}; a Host header {alias:?} reaches that one",
                        snapshot.services[other.0].hostname
                    ),
                )),
                Some(_) => {}
            }
        }
    }
}

fn aliases(svc: &Service, cluster_domain: &str) -> Vec<String> {
    let host = svc.hostname.to_ascii_lowercase();
    if svc.source.kind != waypoint_ir::ResourceKind::Service {
        return vec![host];
    }
    let (n, ns) = (
        svc.name.to_ascii_lowercase(),
        svc.namespace.to_ascii_lowercase(),
    );
    vec![
        host,
        format!("{n}.{ns}.svc"),
        format!("{n}.{ns}"),
        n.clone(),
        format!("{n}.{ns}.svc.{cluster_domain}"),
    ]
}
