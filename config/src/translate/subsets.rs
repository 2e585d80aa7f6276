//! DestinationRule subsets: named sets of a service's endpoints, by labels.
//!
//! Several DestinationRules for one host merge the way Istio merges them
//! (pilot/pkg/model/destination_rule.go `mergeDestinationRule`, and "Split large
//! virtual services and destination rules" in Istio's traffic-management best
//! practices), oldest first: subsets are concatenated, a subset name already
//! defined keeps its first definition, and the first top-level `trafficPolicy`
//! wins. Unlike VirtualServices, this merge also happens for mesh traffic.

use super::hosts::HostIndex;
use super::matchers::At;
use super::Cx;
use crate::istio::destination_rule::TrafficPolicySpec;
use crate::istio::DestinationRuleDoc;
use crate::parse::Obj;
use crate::Diagnostic;
use std::collections::BTreeMap;
use waypoint_ir::{Service, ServiceIdx, Subset};

pub fn apply(
    cx: &mut Cx<'_>,
    index: &HostIndex,
    services: &mut [Service],
    rules: &[Obj<DestinationRuleDoc>],
) {
    let mut rules: Vec<_> = rules.iter().collect();
    rules.sort_by(|a, b| (&a.created, &a.id).cmp(&(&b.created, &b.id)));
    let mut per_service: BTreeMap<ServiceIdx, Vec<&Obj<DestinationRuleDoc>>> = BTreeMap::new();
    for dr in rules {
        match index.resolve(&dr.doc.spec.host, dr.ns(), &cx.opts.cluster_domain) {
            Some(idx) => per_service.entry(idx).or_default().push(dr),
            None => cx.diags.push(Diagnostic::warning(
                &dr.file,
                Some(&dr.id),
                "spec.host",
                index.unknown(&dr.doc.spec.host, &cx.opts.cluster_domain),
            )),
        }
    }
    for (idx, drs) in per_service {
        merge(cx, &mut services[idx.0], &drs);
    }
}

fn merge(cx: &mut Cx<'_>, svc: &mut Service, drs: &[&Obj<DestinationRuleDoc>]) {
    // The merged rule's top-level policy is the parent of every subset's policy,
    // whichever rule the subset came from.
    let top: Option<(&Obj<DestinationRuleDoc>, &TrafficPolicySpec)> = drs
        .iter()
        .find_map(|dr| Some((*dr, dr.doc.spec.traffic_policy.as_deref()?)));
    if let Some((owner, tp)) = top {
        let at = At {
            file: &owner.file,
            id: &owner.id,
        };
        let (policy, ports) =
            super::traffic::service_policy(&at, "spec.trafficPolicy", tp, cx.diags);
        svc.traffic = policy;
        svc.port_traffic = ports;
        for dr in drs.iter().filter(|dr| dr.doc.spec.traffic_policy.is_some()) {
            if dr.id != owner.id {
                cx.diags.push(Diagnostic::warning(
                    &dr.file,
                    Some(&dr.id),
                    "spec.trafficPolicy",
                    format!(
                        "{} (older) already sets the top-level trafficPolicy of {}; this one is discarded",
                        owner.id, svc.hostname
                    ),
                ));
            }
        }
    }
    for dr in drs {
        let at = At {
            file: &dr.file,
            id: &dr.id,
        };
        for (k, s) in dr.doc.spec.subsets.iter().enumerate() {
            if let Some(first) = svc.subsets.iter().find(|x| x.name == s.name) {
                cx.diags.push(at.warning(
                    format!("spec.subsets[{k}].name"),
                    format!(
                        "subset {:?} of {} is already defined by {}; this definition is discarded",
                        s.name, svc.hostname, first.source
                    ),
                ));
                continue;
            }
            let traffic = s.traffic_policy.as_ref().map(|sp| {
                Box::new(super::traffic::subset_policy(
                    &at,
                    &format!("spec.subsets[{k}].trafficPolicy"),
                    sp,
                    top.map(|(_, tp)| tp),
                    cx.diags,
                ))
            });
            let endpoints = Subset::members(&s.labels, &svc.endpoints);
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
