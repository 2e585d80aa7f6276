//! What this waypoint holds of the cluster: the objects each watch has
//! delivered, and from them the part it serves. A Service is served when it, or
//! else its Namespace, names this waypoint's Gateway in `istio.io/use-waypoint`
//! (and `istio.io/use-waypoint-namespace` when the Gateway is in another
//! namespace; `none` opts a Service out of its Namespace's waypoint), as Istio
//! binds services to waypoints. With them come the endpoints and pods behind
//! them, the ServiceEntries bound the same way, the routes and policies
//! that can apply to them, and the mesh config. Everything here is plain data:
//! tested by applying objects to it.
//!
//! `root` is Istio's root namespace (`--root-namespace`, the translation's
//! `Options::root_namespace`): its DestinationRules apply everywhere, its
//! AuthorizationPolicies and RequestAuthentications targeting GatewayClass
//! `istio-waypoint` to every waypoint, and its ConfigMap `istio` is the mesh
//! config.

use super::kinds::Kind;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};

const USE_WAYPOINT: &str = "istio.io/use-waypoint";
const USE_WAYPOINT_NAMESPACE: &str = "istio.io/use-waypoint-namespace";
pub(super) const SERVICE_NAME: &str = "kubernetes.io/service-name";

/// The waypoint's own Gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayRef {
    pub namespace: String,
    pub name: String,
}

impl std::str::FromStr for GatewayRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() => Ok(GatewayRef {
                namespace: ns.into(),
                name: name.into(),
            }),
            _ => Err(format!("{s:?} is not NAMESPACE/NAME")),
        }
    }
}

impl std::fmt::Display for GatewayRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One watch: a kind, cluster-wide (`namespace: None`) or in one namespace. The
/// same object may come through two (a labelled Service is seen cluster-wide
/// and in its bound namespace), so each keeps its own objects.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WatchId {
    pub kind: Kind,
    pub namespace: Option<String>,
}

type Key = (String, String);

#[derive(Default)]
struct Watched {
    objects: BTreeMap<Key, Value>,
    /// Objects of a (re)list in progress, swapped in whole when it completes.
    listing: Option<BTreeMap<Key, Value>>,
    synced: bool,
}

#[derive(Default)]
pub struct Store {
    watches: HashMap<WatchId, Watched>,
}

fn key(object: &Value) -> Key {
    let meta = object.get("metadata");
    let field = |f: &str| {
        meta.and_then(|m| m.get(f))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (field("namespace"), field("name"))
}

impl Store {
    /// An object added or changed (already trimmed).
    pub fn apply(&mut self, watch: &WatchId, object: Value) {
        let w = self.watches.entry(watch.clone()).or_default();
        w.objects.insert(key(&object), object);
    }

    /// Removes an object; true if it was held.
    pub fn delete(&mut self, watch: &WatchId, object: &Value) -> bool {
        self.watches
            .get_mut(watch)
            .is_some_and(|w| w.objects.remove(&key(object)).is_some())
    }

    /// A (re)list begins: its objects replace the watch's when it is done.
    pub fn listing(&mut self, watch: &WatchId) {
        self.watches.entry(watch.clone()).or_default().listing = Some(BTreeMap::new());
    }

    pub fn listed(&mut self, watch: &WatchId, object: Value) {
        let w = self.watches.entry(watch.clone()).or_default();
        w.listing
            .get_or_insert_with(BTreeMap::new)
            .insert(key(&object), object);
    }

    pub fn list_done(&mut self, watch: &WatchId) {
        let w = self.watches.entry(watch.clone()).or_default();
        w.objects = w.listing.take().unwrap_or_default();
        w.synced = true;
    }

    /// A kind that cannot be listed (its CRD is not installed) counts as listed
    /// and empty, so it does not hold up readiness.
    pub fn absent(&mut self, watch: &WatchId) {
        let w = self.watches.entry(watch.clone()).or_default();
        w.objects.clear();
        w.listing = None;
        w.synced = true;
    }

    /// The watch was stopped: what it delivered is no longer held.
    pub fn forget(&mut self, watch: &WatchId) {
        self.watches.remove(watch);
    }

    /// The watch starts again: until its new list is done it counts as
    /// listing, though what it held stays meanwhile.
    pub fn relisting(&mut self, watch: &WatchId) {
        if let Some(w) = self.watches.get_mut(watch) {
            w.synced = false;
        }
    }

    pub fn synced(&self, watch: &WatchId) -> bool {
        self.watches.get(watch).is_some_and(|w| w.synced)
    }

    /// Objects held, for the metric and the memory test.
    pub fn len(&self) -> usize {
        self.watches.values().map(|w| w.objects.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The object `object` replaces or deletes in `watch`, if held.
    pub fn held(&self, watch: &WatchId, object: &Value) -> Option<&Value> {
        self.watches.get(watch)?.objects.get(&key(object))
    }

    /// What `watch` holds.
    pub fn watched(&self, watch: &WatchId) -> impl Iterator<Item = &Value> {
        self.watches
            .get(watch)
            .into_iter()
            .flat_map(|w| w.objects.values())
    }

    /// The object of `kind` named `(namespace, name)`, whichever watch holds it.
    pub fn find(&self, kind: Kind, namespace: &str, name: &str) -> Option<&Value> {
        let key = (namespace.to_string(), name.to_string());
        self.watches
            .iter()
            .filter(|(id, _)| id.kind == kind)
            .find_map(|(_, w)| w.objects.get(&key))
    }

    /// Every object of `kind`, once each, whichever watches delivered it.
    fn of(&self, kind: Kind) -> BTreeMap<&Key, &Value> {
        let mut out = BTreeMap::new();
        for (id, w) in &self.watches {
            if id.kind == kind {
                out.extend(w.objects.iter());
            }
        }
        out
    }
}

pub(super) fn labels(object: &Value) -> BTreeMap<&str, &str> {
    object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// What an object's labels say about waypoints.
enum Binding<'a> {
    Unset,
    OptOut,
    Named { name: &'a str, namespace: &'a str },
}

fn binding<'a>(labels: &BTreeMap<&'a str, &'a str>, own_namespace: &'a str) -> Binding<'a> {
    match labels.get(USE_WAYPOINT) {
        None => Binding::Unset,
        Some(&"none") => Binding::OptOut,
        Some(name) => Binding::Named {
            name,
            namespace: labels
                .get(USE_WAYPOINT_NAMESPACE)
                .copied()
                .unwrap_or(own_namespace),
        },
    }
}

fn is_ours(b: &Binding<'_>, gw: &GatewayRef) -> bool {
    matches!(b, Binding::Named { name, namespace } if *name == gw.name && *namespace == gw.namespace)
}

/// Which Pods and EndpointSlices of one namespace are worth holding: those
/// behind a served Service. The watches of a namespace hold nothing else, so
/// memory follows the served Services, not the namespace's size; when the
/// filter changes, the namespace's watches start again and list anew.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    selectors: Vec<BTreeMap<String, String>>,
    services: BTreeSet<String>,
}

impl Filter {
    pub fn keeps(&self, kind: Kind, object: &Value) -> bool {
        let l = labels(object);
        match kind {
            Kind::Pod => self.selectors.iter().any(|sel| selects(sel, &l)),
            Kind::EndpointSlice => l
                .get(SERVICE_NAME)
                .is_some_and(|svc| self.services.contains(*svc)),
            _ => true,
        }
    }
}

/// Whether a Service's selector selects a Pod with these labels.
pub(super) fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<&str, &str>) -> bool {
    selector
        .iter()
        .all(|(k, v)| labels.get(k.as_str()) == Some(&v.as_str()))
}

/// What of the store this waypoint serves.
#[derive(Debug, Default)]
pub struct Scope {
    /// The objects to translate, in a stable order.
    pub objects: Vec<Value>,
    /// Namespaces bound as a whole: every Service there is watched.
    pub service_namespaces: BTreeSet<String>,
    /// Namespaces with a served Service: their Pods and EndpointSlices are
    /// watched, and held as far as the filter keeps them.
    pub endpoint_namespaces: BTreeMap<String, Filter>,
    /// The served Services, (namespace, name).
    pub services: BTreeSet<(String, String)>,
    /// The served Services' selectors (empty: none, its EndpointSlices are
    /// written by hand).
    pub selectors: BTreeMap<(String, String), BTreeMap<String, String>>,
    /// Namespaces whose labels matter: the served Services' and the Gateway's.
    /// Others are held only while they name this waypoint.
    pub namespaces: BTreeSet<String>,
    /// Namespaces of the ext_authz providers' Services: their Services are
    /// watched, and the providers' held with their endpoints, not served.
    pub authorizer_namespaces: BTreeSet<String>,
}

/// Whether an object from a cluster-wide watch is worth holding, given the
/// namespaces that matter (`wanted`): anything that names this waypoint, and
/// config in (or, for routes, about Services in) those namespaces. The rest of
/// the cluster is dropped on arrival; when `wanted` changes, those watches
/// list again.
pub fn keeps(
    kind: Kind,
    object: &Value,
    gw: &GatewayRef,
    wanted: &BTreeSet<String>,
    root: &str,
) -> bool {
    let (ns, name) = key(object);
    let names_us = |own: &str| is_ours(&binding(&labels(object), own), gw);
    match kind {
        Kind::Namespace => wanted.contains(&name) || names_us(&name),
        Kind::Service => names_us(&ns),
        Kind::ServiceEntry => names_us(&ns) || wanted.contains(&ns),
        Kind::DestinationRule | Kind::AuthorizationPolicy | Kind::RequestAuthentication => {
            wanted.contains(&ns) || ns == root
        }
        Kind::HttpRoute | Kind::GrpcRoute | Kind::TcpRoute => object
            .pointer("/spec/parentRefs")
            .and_then(Value::as_array)
            .is_some_and(|parents| {
                parents.iter().any(|p| {
                    p.get("kind").and_then(Value::as_str) == Some("Service")
                        && wanted
                            .contains(p.get("namespace").and_then(Value::as_str).unwrap_or(&ns))
                })
            }),
        _ => wanted.contains(&ns),
    }
}

pub fn scope(store: &Store, gw: &GatewayRef, root: &str) -> Scope {
    let namespaces = store.of(Kind::Namespace);
    let ns_binding = |ns: &str| -> bool {
        namespaces
            .get(&(String::new(), ns.to_string()))
            .is_some_and(|n| is_ours(&binding(&labels(n), ns), gw))
    };
    let service_namespaces: BTreeSet<String> = namespaces
        .keys()
        .filter(|(_, name)| ns_binding(name))
        .map(|(_, name)| name.clone())
        .collect();
    // A Service's own label wins over its Namespace's.
    let bound = |(ns, _): &&Key, object: &&Value| match binding(&labels(object), ns) {
        Binding::Unset => service_namespaces.contains(ns),
        b => is_ours(&b, gw),
    };
    let services: Vec<(&Key, &Value)> = store
        .of(Kind::Service)
        .into_iter()
        .filter(|(k, o)| bound(k, o))
        .collect();
    let entries: Vec<(&Key, &Value)> = store
        .of(Kind::ServiceEntry)
        .into_iter()
        .filter(|(k, o)| bound(k, o))
        .collect();
    let mut endpoint_namespaces: BTreeMap<String, Filter> = BTreeMap::new();
    let mut selectors = BTreeMap::new();
    for ((ns, name), svc) in &services {
        hold_endpoints(&mut endpoint_namespaces, &mut selectors, ns, name, svc);
    }
    let entry_namespaces: BTreeSet<&str> = entries.iter().map(|((ns, _), _)| ns.as_str()).collect();
    let served: BTreeSet<(&str, &str)> = services
        .iter()
        .map(|((ns, name), _)| (ns.as_str(), name.as_str()))
        .collect();
    // Where routes and policies for them may live: their namespaces and the
    // waypoint's, as Istio's waypoint reads them.
    let served_namespaces: Vec<String> = endpoint_namespaces.keys().cloned().collect();
    let mut config_namespaces: BTreeSet<&str> =
        served_namespaces.iter().map(String::as_str).collect();
    config_namespaces.extend(entry_namespaces.iter().copied());
    config_namespaces.insert(gw.namespace.as_str());

    // The authorizers: their Services and endpoints, for reaching them; their
    // namespaces' config is not read (they are not served).
    let authorizers = super::authorizers::authorizers(store, root);
    let mut authorizer_services = Vec::new();
    for (ns, name) in &authorizers {
        if served.contains(&(ns.as_str(), name.as_str())) {
            continue;
        }
        let Some(svc) = store.find(Kind::Service, ns, name) else {
            continue;
        };
        hold_endpoints(&mut endpoint_namespaces, &mut selectors, ns, name, svc);
        authorizer_services.push(svc.clone());
    }

    let mut objects: Vec<Value> = Vec::new();
    let mut wanted_ns: BTreeSet<&str> = config_namespaces.clone();
    wanted_ns.extend(service_namespaces.iter().map(String::as_str));
    wanted_ns.extend(authorizers.iter().map(|(ns, _)| ns.as_str()));
    objects.extend(
        namespaces
            .iter()
            .filter(|((_, name), _)| wanted_ns.contains(name.as_str()))
            .map(|(_, o)| (*o).clone()),
    );
    objects.extend(services.iter().map(|(_, o)| (*o).clone()));
    objects.extend(authorizer_services);
    objects.extend(entries.iter().map(|(_, o)| (*o).clone()));
    let held = |kind: Kind| -> Vec<Value> {
        store
            .of(kind)
            .into_iter()
            .filter(|((ns, _), o)| {
                endpoint_namespaces
                    .get(ns)
                    .is_some_and(|f| f.keeps(kind, o))
            })
            .map(|(_, o)| o.clone())
            .collect()
    };
    objects.extend(held(Kind::Pod));
    objects.extend(held(Kind::EndpointSlice));
    let in_namespaces = |kind: Kind, extra: Option<&str>| -> Vec<Value> {
        store
            .of(kind)
            .into_iter()
            .filter(|((ns, _), _)| {
                config_namespaces.contains(ns.as_str()) || Some(ns.as_str()) == extra
            })
            .map(|(_, o)| o.clone())
            .collect()
    };
    objects.extend(
        store
            .of(Kind::WorkloadEntry)
            .into_iter()
            .filter(|((ns, _), _)| entry_namespaces.contains(ns.as_str()))
            .map(|(_, o)| o.clone()),
    );
    objects.extend(in_namespaces(Kind::VirtualService, None));
    objects.extend(in_namespaces(Kind::DestinationRule, Some(root)));
    objects.extend(in_namespaces(Kind::BackendTrafficPolicy, None));
    // Those of the served Services' namespaces (targeting a Service or
    // ServiceEntry), the Gateway's (targeting it), and the root namespace's
    // (targeting every waypoint): where Istio looks them up for a waypoint
    // (`ListAuthorizationPolicies`); RequestAuthentication attaches the same way.
    for kind in [Kind::AuthorizationPolicy, Kind::RequestAuthentication] {
        objects.extend(in_namespaces(kind, Some(root)));
    }
    // The mesh config. Its one watch reads only ConfigMap `istio` of the root
    // namespace; the filter keeps that true should another watch ever hold one.
    objects.extend(
        store
            .of(Kind::ConfigMap)
            .into_iter()
            .filter(|((ns, _), _)| ns == root)
            .map(|(_, o)| o.clone()),
    );
    for kind in [Kind::HttpRoute, Kind::GrpcRoute, Kind::TcpRoute] {
        objects.extend(
            store
                .of(kind)
                .into_iter()
                .filter(|((ns, _), route)| parents_served(route, ns, &served))
                .map(|(_, o)| o.clone()),
        );
    }
    objects.extend(
        store
            .of(Kind::Gateway)
            .into_iter()
            .filter(|((ns, name), _)| *ns == gw.namespace && *name == gw.name)
            .map(|(_, o)| o.clone()),
    );
    let namespaces = wanted_ns.iter().map(|n| n.to_string()).collect();
    Scope {
        namespaces,
        services: served
            .iter()
            .map(|(ns, name)| (ns.to_string(), name.to_string()))
            .collect(),
        objects,
        selectors,
        service_namespaces,
        endpoint_namespaces,
        authorizer_namespaces: authorizers.into_iter().map(|(ns, _)| ns).collect(),
    }
}

/// Has the endpoints of Service `ns/name` held: its EndpointSlices, and the
/// Pods its selector picks.
fn hold_endpoints(
    filters: &mut BTreeMap<String, Filter>,
    selectors: &mut BTreeMap<(String, String), BTreeMap<String, String>>,
    ns: &str,
    name: &str,
    svc: &Value,
) {
    let f = filters.entry(ns.to_string()).or_default();
    f.services.insert(name.to_string());
    let selector = selector_of(svc);
    // A Service without a selector has no Pods of its own (its
    // EndpointSlices are written by hand).
    if !selector.is_empty() && !f.selectors.contains(&selector) {
        f.selectors.push(selector.clone());
    }
    selectors.insert((ns.to_string(), name.to_string()), selector);
}

fn selector_of(svc: &Value) -> BTreeMap<String, String> {
    svc.pointer("/spec/selector")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a route (HTTP, gRPC or TCP) names a served Service among its parents (a mesh
/// route; the parentRef's namespace defaults to the route's).
fn parents_served(route: &Value, route_ns: &str, served: &BTreeSet<(&str, &str)>) -> bool {
    let Some(parents) = route.pointer("/spec/parentRefs").and_then(Value::as_array) else {
        return false;
    };
    parents.iter().any(|p| {
        let s = |f: &str| p.get(f).and_then(Value::as_str);
        s("kind") == Some("Service")
            && s("group").unwrap_or("").is_empty()
            && s("name")
                .is_some_and(|name| served.contains(&(s("namespace").unwrap_or(route_ns), name)))
    })
}

#[cfg(test)]
mod tests;
