//! DestinationRule subsets: named sets of a service's endpoints, by labels.

use super::hosts::HostIndex;
use super::Cx;
use crate::Diagnostic;
use waypoint_ir::{EndpointIdx, Service, Subset};

pub fn apply(cx: &mut Cx<'_>, index: &HostIndex, services: &mut [Service]) {
    let mut rules: Vec<_> = cx.res.destination_rules.iter().collect();
    // Istio uses the oldest DestinationRule for a host.
    rules.sort_by(|a, b| (&a.created, &a.id).cmp(&(&b.created, &b.id)));
    let mut owner = vec![None; services.len()];
    for dr in rules {
        let spec = &dr.doc.spec;
        let Some(idx) = index.resolve(&spec.host, dr.ns(), &cx.opts.cluster_domain) else {
            cx.diags.push(Diagnostic::warning(
                &dr.file,
                Some(&dr.id),
                "spec.host",
                format!("no service {:?} is known", spec.host),
            ));
            continue;
        };
        if let Some(first) = &owner[idx.0] {
            cx.diags.push(Diagnostic::warning(
                &dr.file,
                Some(&dr.id),
                "spec.host",
                format!(
                    "{first} already configures {}; ignored",
                    services[idx.0].hostname
                ),
            ));
            continue;
        }
        owner[idx.0] = Some(dr.id.clone());
        let at = super::matchers::At {
            file: &dr.file,
            id: &dr.id,
        };
        let svc = &mut services[idx.0];
        if let Some(tp) = &spec.traffic_policy {
            let (top, ports) =
                super::traffic::service_policy(&at, "spec.trafficPolicy", tp, cx.diags);
            svc.traffic = top;
            svc.port_traffic = ports;
        }
        for (k, s) in spec.subsets.iter().enumerate() {
            let traffic = s.traffic_policy.as_ref().map(|sp| {
                super::traffic::subset_policy(
                    &at,
                    &format!("spec.subsets[{k}].trafficPolicy"),
                    sp,
                    spec.traffic_policy.as_ref(),
                    cx.diags,
                )
            });
            let endpoints = svc
                .endpoints
                .iter()
                .enumerate()
                .filter(|(_, ep)| s.labels.iter().all(|(k, v)| ep.labels.get(k) == Some(v)))
                .map(|(i, _)| EndpointIdx(i))
                .collect();
            svc.subsets.push(Subset {
                name: s.name.clone(),
                labels: s.labels.clone(),
                endpoints,
                source: dr.id.clone(),
                traffic,
            });
        }
    }
}
