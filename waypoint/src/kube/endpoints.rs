//! Endpoint changes, told apart from every other change. A Pod or an
//! EndpointSlice that comes, goes or changes concerns the few served Services
//! whose selector matches the Pod (before or after) or whose name the slice
//! carries; only those are translated again (`waypoint_config::refresh_endpoints`),
//! from what the store holds in their namespace.

use super::kinds::Kind;
use super::scope::{labels, selects, Scope, Store, WatchId, SERVICE_NAME};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// A served Service: (namespace, name).
pub type ServiceKey = (String, String);

/// The served Services of each namespace with their selectors, as the last
/// whole build scoped them.
#[derive(Debug, Default)]
pub struct Served(BTreeMap<String, Vec<(String, Selector)>>);

type Selector = BTreeMap<String, String>;

impl Served {
    pub fn new(scope: &Scope) -> Self {
        let mut by_ns: BTreeMap<String, Vec<_>> = BTreeMap::new();
        for ((ns, name), selector) in &scope.selectors {
            by_ns
                .entry(ns.clone())
                .or_default()
                .push((name.clone(), selector.clone()));
        }
        Served(by_ns)
    }

    /// Adds to `out` the served Services that an object of `kind` in `ns`
    /// concerns, as it was (`old`) and as it is (`new`).
    pub fn concerned(
        &self,
        kind: Kind,
        ns: &str,
        versions: [Option<&Value>; 2],
        out: &mut BTreeSet<ServiceKey>,
    ) {
        let Some(services) = self.0.get(ns) else {
            return;
        };
        for object in versions.into_iter().flatten() {
            let l = labels(object);
            for (name, selector) in services {
                let concerned = match kind {
                    Kind::Pod => !selector.is_empty() && selects(selector, &l),
                    Kind::EndpointSlice => l.get(SERVICE_NAME) == Some(&name.as_str()),
                    _ => false,
                };
                if concerned {
                    out.insert((ns.to_string(), name.clone()));
                }
            }
        }
    }

    /// What the concerned Services' endpoints are translated from: each
    /// Service, its Namespace (who is in the mesh), its EndpointSlices, and
    /// the Pods its selector matches or its EndpointSlices name: what a whole
    /// translation would look at for them, and nothing more.
    pub fn objects(&self, store: &Store, services: &BTreeSet<ServiceKey>) -> Vec<Value> {
        let mut out = Vec::new();
        let namespaces: BTreeSet<&str> = services.iter().map(|(ns, _)| ns.as_str()).collect();
        for ns in namespaces {
            out.extend(store.find(Kind::Namespace, "", ns).cloned());
            let watch = |kind| WatchId {
                kind,
                namespace: Some(ns.to_string()),
            };
            let concerned = |name: &str| services.contains(&(ns.to_string(), name.to_string()));
            let slices: Vec<&Value> = store
                .watched(&watch(Kind::EndpointSlice))
                .filter(|s| {
                    labels(s)
                        .get(SERVICE_NAME)
                        .is_some_and(|svc| concerned(svc))
                })
                .collect();
            let named: BTreeSet<&str> = slices
                .iter()
                .filter_map(|s| s.get("endpoints")?.as_array())
                .flatten()
                .filter_map(|e| e.pointer("/targetRef/name")?.as_str())
                .collect();
            let selectors: Vec<&Selector> = self
                .0
                .get(ns)
                .into_iter()
                .flatten()
                .filter(|(name, sel)| concerned(name) && !sel.is_empty())
                .map(|(_, sel)| sel)
                .collect();
            out.extend(
                store
                    .watched(&watch(Kind::Pod))
                    .filter(|p| {
                        let name = p.pointer("/metadata/name").and_then(Value::as_str);
                        name.is_some_and(|n| named.contains(n)) || {
                            let l = labels(p);
                            selectors.iter().any(|sel| selects(sel, &l))
                        }
                    })
                    .cloned(),
            );
            out.extend(slices.into_iter().cloned());
        }
        for (ns, name) in services {
            out.extend(store.find(Kind::Service, ns, name).cloned());
        }
        out
    }
}
