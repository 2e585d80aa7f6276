//! Services and their endpoints: Kubernetes Services (from Pods or EndpointSlices)
//! and ServiceEntry hosts (inline endpoints or selected WorkloadEntries).

use super::index::Index;
use super::Cx;
use crate::istio::WorkloadEntrySpec;
use crate::kube::{IntOrString, PodDoc, ServicePortSpec, DATAPLANE_MODE};
use crate::parse::Obj;
use crate::Diagnostic;
use std::collections::BTreeSet;
use std::net::IpAddr;
use waypoint_ir::{Endpoint, ResourceRef, Service, ServicePort};

/// The services, and the file each came from (for diagnostics once the
/// documents are gone).
pub fn build(
    cx: &mut Cx<'_>,
    idx: &Index<'_>,
    kube: &[Obj<crate::kube::ServiceDoc>],
) -> (Vec<Service>, Vec<String>) {
    let mut k8s: Vec<&Obj<_>> = kube.iter().collect();
    k8s.sort_by(|a, b| a.id.cmp(&b.id));
    // A vector grown push by push at 10,000 Services keeps room for 16,384.
    let mut out = Vec::with_capacity(k8s.len() + cx.res.service_entries.len());
    let mut files = Vec::with_capacity(out.capacity());
    for svc in k8s {
        out.push(kube_service(cx, idx, svc));
        files.push(svc.file.clone());
    }
    let mut entries: Vec<&Obj<_>> = cx.res.service_entries.iter().collect();
    entries.sort_by(|a, b| a.id.cmp(&b.id));
    for se in entries {
        out.extend(service_entry(cx, se));
        files.resize(out.len(), se.file.clone());
    }
    (out, files)
}

fn parse_ip(cx: &mut Cx<'_>, file: &str, id: &ResourceRef, field: &str, s: &str) -> Option<IpAddr> {
    match s.parse() {
        Ok(ip) => Some(ip),
        Err(_) => {
            cx.diags.push(Diagnostic::error(
                file,
                Some(id),
                field,
                format!("{s:?} is not an IP address"),
            ));
            None
        }
    }
}

fn identity(cx: &Cx<'_>, ns: &str, sa: Option<&str>) -> String {
    format!(
        "spiffe://{}/ns/{ns}/sa/{}",
        cx.opts.trust_domain,
        sa.unwrap_or("default")
    )
}

fn in_mesh(idx: &Index<'_>, ns: &str, labels: &waypoint_ir::Labels) -> bool {
    match labels.get(DATAPLANE_MODE).map(String::as_str) {
        Some("ambient") => true,
        Some("none") => false,
        _ => idx.is_ambient(ns),
    }
}

pub fn kube_service(
    cx: &mut Cx<'_>,
    idx: &Index<'_>,
    obj: &Obj<crate::kube::ServiceDoc>,
) -> Service {
    let spec = &obj.doc.spec;
    let ns = obj.ns().to_string();
    let mut addresses = Vec::new();
    let ips: Vec<(String, &str)> = if spec.cluster_ips.is_empty() {
        spec.cluster_ip
            .iter()
            .map(|ip| ("spec.clusterIP".to_string(), ip.as_str()))
            .collect()
    } else {
        spec.cluster_ips
            .iter()
            .enumerate()
            .map(|(i, ip)| (format!("spec.clusterIPs[{i}]"), ip.as_str()))
            .collect()
    };
    for (field, ip) in ips {
        // "None" is a headless service: endpoints, no VIP.
        if ip.is_empty() || ip == "None" {
            continue;
        }
        if let Some(ip) = parse_ip(cx, &obj.file, &obj.id, &field, ip) {
            addresses.push(ip);
        }
    }
    let ports: Vec<ServicePort> = spec
        .ports
        .iter()
        .map(|p| ServicePort {
            port: p.port,
            name: p.name.clone(),
            app_protocol: p.app_protocol.clone(),
            protocol: super::protocol::select(p.port, p.name.as_deref(), p.app_protocol.as_deref()),
        })
        .collect();
    let slices = idx.slices(&ns, obj.name());
    let endpoints = if slices.is_empty() {
        pod_endpoints(cx, idx, obj)
    } else {
        slice_endpoints(cx, idx, obj, slices)
    };
    Service {
        hostname: format!("{}.{ns}.svc.{}", obj.name(), cx.opts.cluster_domain),
        namespace: ns,
        name: obj.name().to_string(),
        source: obj.id.clone(),
        addresses,
        ports,
        endpoints,
        subsets: Vec::new(),
        routes: Vec::new(),
        route_source: Default::default(),
        consumers: Vec::new(),
        tcp_routes: Vec::new(),
        authz: Vec::new(),
        jwt: Vec::new(),
        traffic: Default::default(),
        port_traffic: Default::default(),
    }
}

/// The port a pod listens on for a service port; `None` when a named target port
/// is not among the pod's container ports.
fn target_port(port: &ServicePortSpec, pod: Option<&PodDoc>) -> Option<u16> {
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::Str(name)) => match name.parse() {
            Ok(n) => Some(n),
            Err(_) => pod?.named_port(name),
        },
    }
}

fn pod_endpoints(
    cx: &mut Cx<'_>,
    idx: &Index<'_>,
    svc: &Obj<crate::kube::ServiceDoc>,
) -> Vec<Endpoint> {
    let Some(selector) = svc.doc.spec.selector.as_ref().filter(|s| !s.is_empty()) else {
        return Vec::new();
    };
    let mut pods: Vec<&Obj<PodDoc>> = idx
        .selected(svc.ns(), selector)
        .filter(|p| p.doc.is_running())
        .collect();
    pods.sort_by(|a, b| a.id.cmp(&b.id));
    let mut out = Vec::new();
    for pod in pods {
        let Some(ip) = pod.doc.ip() else { continue };
        let Some(address) = parse_ip(cx, &pod.file, &pod.id, "status.podIP", ip) else {
            continue;
        };
        let ports = svc
            .doc
            .spec
            .ports
            .iter()
            .filter_map(|p| Some((p.port, target_port(p, Some(&pod.doc))?)))
            .collect();
        out.push(Endpoint {
            address,
            ports,
            labels: pod.labels.clone(),
            identity: Some(identity(
                cx,
                pod.ns(),
                pod.doc.spec.service_account_name.as_deref(),
            )),
            in_mesh: in_mesh(idx, pod.ns(), &pod.labels),
            source: pod.id.clone(),
        });
    }
    out
}

fn slice_endpoints(
    cx: &mut Cx<'_>,
    idx: &Index<'_>,
    svc: &Obj<crate::kube::ServiceDoc>,
    slices: &[&Obj<crate::kube::EndpointSliceDoc>],
) -> Vec<Endpoint> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for slice in slices {
        for (i, ep) in slice.doc.endpoints.iter().enumerate() {
            if ep.conditions.ready == Some(false) {
                continue;
            }
            let pod = ep
                .target_ref
                .as_ref()
                .filter(|t| t.kind.as_deref() == Some("Pod"))
                .and_then(|t| {
                    let ns = t.namespace.as_deref().unwrap_or(slice.ns());
                    idx.pod(ns, t.name.as_deref()?)
                });
            for (j, a) in ep.addresses.iter().enumerate() {
                let field = format!("endpoints[{i}].addresses[{j}]");
                let Some(address) = parse_ip(cx, &slice.file, &slice.id, &field, a) else {
                    continue;
                };
                if !seen.insert(address) {
                    continue;
                }
                // The slice port named like the service port carries the target port.
                let ports = svc
                    .doc
                    .spec
                    .ports
                    .iter()
                    .filter_map(|p| {
                        let named = slice.doc.ports.iter().find(|sp| {
                            sp.name.as_deref().unwrap_or("") == p.name.as_deref().unwrap_or("")
                        });
                        let port = named
                            .and_then(|sp| sp.port)
                            .or_else(|| target_port(p, pod.map(|p| &p.doc)))?;
                        Some((p.port, port))
                    })
                    .collect();
                out.push(Endpoint {
                    address,
                    ports,
                    labels: pod.map(|p| p.labels.clone()).unwrap_or_default(),
                    identity: pod
                        .map(|p| identity(cx, p.ns(), p.doc.spec.service_account_name.as_deref())),
                    in_mesh: pod.is_some_and(|p| in_mesh(idx, p.ns(), &p.labels)),
                    source: pod
                        .map(|p| p.id.clone())
                        .unwrap_or_else(|| slice.id.clone()),
                });
            }
        }
    }
    out
}

fn service_entry(cx: &mut Cx<'_>, se: &Obj<crate::istio::ServiceEntryDoc>) -> Vec<Service> {
    let spec = &se.doc.spec;
    let mut addresses = Vec::new();
    for (i, a) in spec.addresses.iter().enumerate() {
        if a.contains('/') {
            cx.diags.push(Diagnostic::warning(
                &se.file,
                Some(&se.id),
                format!("spec.addresses[{i}]"),
                "CIDR addresses are not supported; ignored",
            ));
            continue;
        }
        if let Some(ip) = parse_ip(cx, &se.file, &se.id, &format!("spec.addresses[{i}]"), a) {
            addresses.push(ip);
        }
    }
    if let Some(r) = spec
        .resolution
        .as_deref()
        .filter(|r| *r != "STATIC" && *r != "NONE")
    {
        cx.diags.push(Diagnostic::warning(
            &se.file,
            Some(&se.id),
            "spec.resolution",
            format!("{r} resolution is not supported; only STATIC endpoints are used"),
        ));
    }
    let mut workloads: Vec<(ResourceRef, &WorkloadEntrySpec, String)> = spec
        .endpoints
        .iter()
        .enumerate()
        .map(|(i, e)| (se.id.clone(), e, format!("spec.endpoints[{i}].address")))
        .collect();
    if let Some(sel) = &spec.workload_selector {
        for we in &cx.res.workload_entries {
            if we.ns() == se.ns() && we.doc.spec.labels.matches(&sel.labels) {
                workloads.push((we.id.clone(), &we.doc.spec, "spec.address".into()));
            }
        }
    }
    let mut endpoints = Vec::new();
    for (source, w, field) in workloads {
        let file = if source.kind == waypoint_ir::ResourceKind::WorkloadEntry {
            cx.res
                .workload_entries
                .iter()
                .find(|o| o.id == source)
                .map(|o| o.file.clone())
                .unwrap_or_default()
        } else {
            se.file.clone()
        };
        let Ok(address) = w.address.parse::<IpAddr>() else {
            cx.diags.push(Diagnostic::warning(
                &file,
                Some(&source),
                field,
                format!(
                    "{:?} is not an IP address; only STATIC IP endpoints are supported",
                    w.address
                ),
            ));
            continue;
        };
        let ports = spec
            .ports
            .iter()
            .map(|p| {
                let named = p.name.as_ref().and_then(|n| w.ports.get(n)).copied();
                (p.number, named.or(p.target_port).unwrap_or(p.number))
            })
            .collect();
        endpoints.push(Endpoint {
            address,
            ports,
            labels: std::sync::Arc::new(w.labels.clone()),
            identity: w
                .service_account
                .as_deref()
                .map(|sa| identity(cx, source.namespace.as_str(), Some(sa))),
            in_mesh: w.labels.get(DATAPLANE_MODE).map(String::as_str) == Some("ambient"),
            source,
        });
    }
    let ports: Vec<ServicePort> = spec
        .ports
        .iter()
        .map(|p| ServicePort {
            port: p.number,
            name: p.name.clone(),
            app_protocol: p.protocol.as_ref().map(|p| p.to_ascii_lowercase()),
            // A ServiceEntry port's `protocol` is the protocol; its name is not read.
            protocol: super::protocol::select(p.number, None, p.protocol.as_deref()),
        })
        .collect();
    spec.hosts
        .iter()
        .map(|host| Service {
            hostname: host.to_ascii_lowercase(),
            namespace: se.ns().to_string(),
            name: host.clone(),
            source: se.id.clone(),
            addresses: addresses.clone(),
            ports: ports.clone(),
            endpoints: endpoints.clone(),
            subsets: Vec::new(),
            routes: Vec::new(),
            route_source: Default::default(),
            consumers: Vec::new(),
            tcp_routes: Vec::new(),
            authz: Vec::new(),
            jwt: Vec::new(),
            traffic: Default::default(),
            port_traffic: Default::default(),
        })
        .collect()
}
