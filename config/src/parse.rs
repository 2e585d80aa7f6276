//! YAML/JSON documents → typed resources, each remembering its file and identity.

use crate::envoy_gateway::BackendTrafficPolicyDoc;
use crate::gateway_api::{GatewayDoc, GrpcRouteDoc, HttpRouteDoc, TcpRouteDoc};
use crate::istio::{
    AuthorizationPolicyDoc, ConfigMapDoc, DestinationRuleDoc, RequestAuthenticationDoc,
    ServiceEntryDoc, VirtualServiceDoc, WorkloadEntryDoc,
};
use crate::kube::{EndpointSliceDoc, PodDoc, ServiceDoc};
use crate::{Diagnostic, Source};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::collections::BTreeMap;
use waypoint_ir::{Labels, ResourceKind, ResourceRef};

mod compact;
mod direct;
mod parallel;
mod strict;

pub use compact::exact;
pub use waypoint_ir::sorted_pairs as pairs;

/// The ConfigMap istiod reads the mesh config from (revision `default`).
pub const MESH_CONFIG_MAP: &str = "istio";

/// One resource of a known kind.
#[derive(Debug)]
pub struct Obj<T> {
    pub file: String,
    pub id: ResourceRef,
    /// Shared with the endpoints translated from the object (a Pod's).
    pub labels: std::sync::Arc<Labels>,
    /// `metadata.creationTimestamp` (RFC 3339 sorts as text); empty when absent,
    /// which sorts first, as if oldest.
    pub created: String,
    pub doc: T,
}

impl<T> Obj<T> {
    pub fn ns(&self) -> &str {
        &self.id.namespace
    }
    pub fn name(&self) -> &str {
        &self.id.name
    }
}

#[derive(Default, Debug)]
pub struct Resources {
    pub services: Vec<Obj<ServiceDoc>>,
    pub pods: Vec<Obj<PodDoc>>,
    pub slices: Vec<Obj<EndpointSliceDoc>>,
    pub namespaces: Vec<Obj<()>>,
    pub service_entries: Vec<Obj<ServiceEntryDoc>>,
    pub workload_entries: Vec<Obj<WorkloadEntryDoc>>,
    pub virtual_services: Vec<Obj<VirtualServiceDoc>>,
    pub destination_rules: Vec<Obj<DestinationRuleDoc>>,
    pub http_routes: Vec<Obj<HttpRouteDoc>>,
    pub grpc_routes: Vec<Obj<GrpcRouteDoc>>,
    pub tcp_routes: Vec<Obj<TcpRouteDoc>>,
    pub gateways: Vec<Obj<GatewayDoc>>,
    pub traffic_policies: Vec<Obj<BackendTrafficPolicyDoc>>,
    pub authorization_policies: Vec<Obj<AuthorizationPolicyDoc>>,
    pub request_authentications: Vec<Obj<RequestAuthenticationDoc>>,
    /// ConfigMaps named `istio` (mesh config); translation reads the root
    /// namespace's.
    pub mesh_configs: Vec<Obj<ConfigMapDoc>>,
}

impl Resources {
    /// Gives back the room the lists grew into (up to half of each), as the
    /// documents live through translation.
    fn shrink_to_fit(&mut self) {
        // Named one by one, so a new list cannot be missed.
        let Resources {
            services,
            pods,
            slices,
            namespaces,
            service_entries,
            workload_entries,
            virtual_services,
            destination_rules,
            http_routes,
            grpc_routes,
            tcp_routes,
            gateways,
            traffic_policies,
            authorization_policies,
            request_authentications,
            mesh_configs,
        } = self;
        services.shrink_to_fit();
        pods.shrink_to_fit();
        slices.shrink_to_fit();
        namespaces.shrink_to_fit();
        service_entries.shrink_to_fit();
        workload_entries.shrink_to_fit();
        virtual_services.shrink_to_fit();
        destination_rules.shrink_to_fit();
        http_routes.shrink_to_fit();
        grpc_routes.shrink_to_fit();
        tcp_routes.shrink_to_fit();
        gateways.shrink_to_fit();
        traffic_policies.shrink_to_fit();
        authorization_policies.shrink_to_fit();
        request_authentications.shrink_to_fit();
        mesh_configs.shrink_to_fit();
    }
}

/// Each resource placed so far, with the file it came from: the API server
/// holds one object per kind, namespace and name.
type Seen<'s> = BTreeMap<ResourceRef, &'s str>;

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase", default)]
struct Meta {
    name: Option<String>,
    namespace: Option<String>,
    labels: Labels,
    creation_timestamp: Option<String>,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Head {
    api_version: Option<String>,
    kind: Option<String>,
    #[serde(default)]
    metadata: Meta,
}

pub fn parse_all(sources: &[Source], diags: &mut Vec<Diagnostic>) -> Resources {
    parse_split(sources, &parallel::Split::auto(), diags)
}

/// [`parse_all`], its reading shared out as `split` says; what it gives does
/// not depend on how.
fn parse_split(
    sources: &[Source],
    split: &parallel::Split,
    diags: &mut Vec<Diagnostic>,
) -> Resources {
    let mut out = Resources::default();
    let mut seen = BTreeMap::new();
    parallel::each(sources, split, |src, event| match event {
        parallel::Event::Doc(read) => place_read(&src.file, read, &mut out, &mut seen, diags),
        parallel::Event::Rest { skip } => in_order(src, skip, &mut out, &mut seen, diags),
    });
    out.shrink_to_fit();
    out
}

/// The documents of one file from the `skip`th on, one after the other.
fn in_order<'s>(
    src: &'s Source,
    skip: usize,
    out: &mut Resources,
    seen: &mut Seen<'s>,
    diags: &mut Vec<Diagnostic>,
) {
    let docs = serde_yaml_ng::Deserializer::from_str(&src.content);
    for (i, doc) in docs.enumerate().skip(skip) {
        match direct::read(doc) {
            Ok(None) => {}
            Ok(Some(read)) => place_read(&src.file, read, out, seen, diags),
            // Documents are independent, so those before this one are
            // placed as the `Value` route would have; it takes over from
            // here, with its own messages (and its leniency, where the
            // direct reader was stricter).
            Err(_) => {
                via_values(src, i, out, seen, diags);
                break;
            }
        }
    }
}

fn place_read<'s>(
    file: &'s str,
    read: direct::Read,
    out: &mut Resources,
    seen: &mut Seen<'s>,
    diags: &mut Vec<Diagnostic>,
) {
    match read {
        direct::Read::Value(value) => one(file, value, out, seen, diags),
        direct::Read::Typed(head, doc) => place(file, head, Body::Typed(doc), out, seen, diags),
    }
}

/// The documents of one file from the `skip`th on, each read into a
/// `serde_json::Value`.
fn via_values<'s>(
    src: &'s Source,
    skip: usize,
    out: &mut Resources,
    seen: &mut Seen<'s>,
    diags: &mut Vec<Diagnostic>,
) {
    let docs = serde_yaml_ng::Deserializer::from_str(&src.content);
    for (i, doc) in docs.enumerate().skip(skip) {
        match serde_json::Value::deserialize(doc) {
            Ok(serde_json::Value::Null) => {}
            Ok(value) => one(&src.file, value, out, seen, diags),
            Err(e) => {
                diags.push(Diagnostic::error(
                    &src.file,
                    None,
                    "",
                    format!("document {}: not valid YAML: {e}", i + 1),
                ));
                // After a syntax error the stream cannot resynchronise: the
                // iterator would yield the same error forever.
                break;
            }
        }
    }
}

/// [`parse_all`] without the direct reader, for tests that compare the two.
#[cfg(test)]
pub fn parse_all_via_values(sources: &[Source], diags: &mut Vec<Diagnostic>) -> Resources {
    let mut out = Resources::default();
    let mut seen = BTreeMap::new();
    for src in sources {
        via_values(src, 0, &mut out, &mut seen, diags);
    }
    out
}

/// Objects already decoded (read from the Kubernetes API), each named by
/// `origin` in diagnostics.
pub fn parse_values<'a>(
    objects: impl IntoIterator<Item = (&'a str, serde_json::Value)>,
    diags: &mut Vec<Diagnostic>,
) -> Resources {
    let mut out = Resources::default();
    let mut seen = BTreeMap::new();
    for (origin, value) in objects {
        one(origin, value, &mut out, &mut seen, diags);
    }
    out
}

/// The `Kind namespace/name` of an object of a kind we read, without parsing
/// the rest of it.
pub fn identity(value: &serde_json::Value) -> Option<ResourceRef> {
    let api_version = value.get("apiVersion")?.as_str()?;
    let kind = kind_of(api_version, value.get("kind")?.as_str()?)?;
    let meta = value.get("metadata")?;
    let name = meta.get("name")?.as_str()?;
    let namespace = match kind {
        ResourceKind::Namespace => "",
        _ => meta
            .get("namespace")
            .and_then(|n| n.as_str())
            .unwrap_or("default"),
    };
    Some(ResourceRef::new(kind, namespace, name))
}

/// The kinds read, at the API versions their projects serve; anything else is
/// skipped (with a debug log), as `kubectl` would not apply it either.
fn kind_of(api_version: &str, kind: &str) -> Option<ResourceKind> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    const ISTIO: &[&str] = &["v1", "v1beta1", "v1alpha3"];
    const GATEWAY_API: &[&str] = &["v1", "v1beta1"];
    let (kind, versions): (ResourceKind, &[&str]) = match (group, kind) {
        ("", "Service") => (ResourceKind::Service, &["v1"]),
        ("", "Pod") => (ResourceKind::Pod, &["v1"]),
        ("", "Namespace") => (ResourceKind::Namespace, &["v1"]),
        ("", "ConfigMap") => (ResourceKind::ConfigMap, &["v1"]),
        ("discovery.k8s.io", "EndpointSlice") => (ResourceKind::EndpointSlice, &["v1"]),
        ("networking.istio.io", "VirtualService") => (ResourceKind::VirtualService, ISTIO),
        ("networking.istio.io", "DestinationRule") => (ResourceKind::DestinationRule, ISTIO),
        ("networking.istio.io", "ServiceEntry") => (ResourceKind::ServiceEntry, ISTIO),
        ("networking.istio.io", "WorkloadEntry") => (ResourceKind::WorkloadEntry, ISTIO),
        ("gateway.networking.k8s.io", "HTTPRoute") => (ResourceKind::HTTPRoute, GATEWAY_API),
        ("gateway.networking.k8s.io", "GRPCRoute") => (ResourceKind::GRPCRoute, &["v1"]),
        // v1 since Gateway API 1.6 (standard channel); v1alpha2 is deprecated
        // and served by the experimental channel only.
        ("gateway.networking.k8s.io", "TCPRoute") => (ResourceKind::TCPRoute, &["v1", "v1alpha2"]),
        ("gateway.networking.k8s.io", "Gateway") => (ResourceKind::Gateway, GATEWAY_API),
        ("security.istio.io", "AuthorizationPolicy") => {
            (ResourceKind::AuthorizationPolicy, &["v1", "v1beta1"])
        }
        ("security.istio.io", "RequestAuthentication") => {
            (ResourceKind::RequestAuthentication, &["v1", "v1beta1"])
        }
        ("gateway.envoyproxy.io", "BackendTrafficPolicy") => {
            (ResourceKind::BackendTrafficPolicy, &["v1alpha1"])
        }
        _ => return None,
    };
    versions.contains(&version).then_some(kind)
}

fn one<'s>(
    file: &'s str,
    value: serde_json::Value,
    out: &mut Resources,
    seen: &mut Seen<'s>,
    diags: &mut Vec<Diagnostic>,
) {
    let head: Head = match serde_path_to_error::deserialize(&value) {
        Ok(h) => h,
        Err(e) => {
            diags.push(Diagnostic::error(
                file,
                None,
                e.path().to_string(),
                e.inner().to_string(),
            ));
            return;
        }
    };
    place(file, head, Body::Value(value), out, seen, diags);
}

/// What follows a document's head: the whole document, to be read once its
/// identity has been checked, or the typed document already read.
#[allow(clippy::large_enum_variant)] // as `direct::Read`
enum Body {
    Value(serde_json::Value),
    Typed(direct::Doc),
}

fn place<'s>(
    file: &'s str,
    head: Head,
    body: Body,
    out: &mut Resources,
    seen: &mut Seen<'s>,
    diags: &mut Vec<Diagnostic>,
) {
    let (Some(api_version), Some(kind_name)) = (head.api_version, head.kind) else {
        diags.push(Diagnostic::error(
            file,
            None,
            "",
            "a document without apiVersion and kind",
        ));
        return;
    };
    let Some(kind) = kind_of(&api_version, &kind_name) else {
        log::debug!("{file}: skipping {api_version} {kind_name}");
        return;
    };
    let namespace = match kind {
        ResourceKind::Namespace => String::new(),
        _ => head.metadata.namespace.unwrap_or_else(|| "default".into()),
    };
    let Some(name) = head.metadata.name else {
        let id = ResourceRef::new(kind, namespace, "<unnamed>");
        diags.push(Diagnostic::error(
            file,
            Some(&id),
            "metadata.name",
            "missing",
        ));
        return;
    };
    if kind == ResourceKind::ConfigMap && name != MESH_CONFIG_MAP {
        log::debug!("{file}: skipping ConfigMap {namespace}/{name}");
        return;
    }
    let id = ResourceRef::new(kind, namespace, name);
    // The API server holds one object per kind/namespace/name; two in the
    // manifests is a mistake, and which one "wins" must not depend on luck.
    if let Some(first) = seen.get(&id) {
        diags.push(Diagnostic::warning(
            file,
            Some(&id),
            "metadata.name",
            format!("already defined in {first}; this definition is ignored"),
        ));
        return;
    }
    seen.insert(id.clone(), file);
    let labels = shared(head.metadata.labels);
    let created = head.metadata.creation_timestamp.unwrap_or_default();
    macro_rules! push {
        ($list:ident, $variant:ident) => {{
            let doc = match body {
                Body::Typed(direct::Doc::$variant(doc)) => Some(doc),
                Body::Typed(_) => unreachable!("typed as the kind it was read for"),
                Body::Value(value) => typed(file, &id, value, diags),
            };
            push!(@obj $list, doc)
        }};
        ($list:ident) => {{
            let Body::Value(value) = body else {
                unreachable!("only the kinds of direct::Doc are read directly")
            };
            push!(@obj $list, typed(file, &id, value, diags))
        }};
        (@obj $list:ident, $doc:expr) => {{
            if let Some(doc) = $doc {
                out.$list.push(Obj {
                    file: file.to_string(),
                    id,
                    labels,
                    created,
                    doc,
                });
            }
        }};
    }
    match kind {
        ResourceKind::Service => push!(services, Service),
        ResourceKind::Pod => push!(pods, Pod),
        ResourceKind::EndpointSlice => push!(slices, EndpointSlice),
        ResourceKind::ServiceEntry => push!(service_entries, ServiceEntry),
        ResourceKind::WorkloadEntry => push!(workload_entries, WorkloadEntry),
        ResourceKind::VirtualService => push!(virtual_services, VirtualService),
        ResourceKind::DestinationRule => push!(destination_rules, DestinationRule),
        ResourceKind::HTTPRoute => push!(http_routes, HttpRoute),
        ResourceKind::GRPCRoute => push!(grpc_routes, GrpcRoute),
        ResourceKind::TCPRoute => push!(tcp_routes, TcpRoute),
        ResourceKind::Gateway => push!(gateways),
        ResourceKind::BackendTrafficPolicy => push!(traffic_policies),
        ResourceKind::AuthorizationPolicy => push!(authorization_policies),
        ResourceKind::RequestAuthentication => push!(request_authentications),
        ResourceKind::ConfigMap => push!(mesh_configs),
        ResourceKind::Namespace => out.namespaces.push(Obj {
            file: file.to_string(),
            id,
            labels,
            created,
            doc: (),
        }),
    }
}

/// Most objects have no labels: they share one empty set rather than each
/// allocating its own.
fn shared(labels: Labels) -> std::sync::Arc<Labels> {
    static EMPTY: std::sync::LazyLock<std::sync::Arc<Labels>> =
        std::sync::LazyLock::new(Default::default);
    if labels.is_empty() {
        EMPTY.clone()
    } else {
        std::sync::Arc::new(labels)
    }
}

/// Deserializes the whole document, so an error's path starts at the top
/// (`spec.http[0].route[1].weight`).
fn typed<T: DeserializeOwned>(
    file: &str,
    id: &ResourceRef,
    value: serde_json::Value,
    diags: &mut Vec<Diagnostic>,
) -> Option<T> {
    match serde_path_to_error::deserialize(value) {
        Ok(doc) => Some(doc),
        Err(e) => {
            diags.push(Diagnostic::error(
                file,
                Some(id),
                e.path().to_string(),
                e.inner().to_string(),
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests;
