//! Lookups a translation makes once per Service, built once per translation:
//! Pods by namespace and label, Pods by name, EndpointSlices by Service, and
//! the ambient namespaces. Without them every Service scans every Pod, and
//! translation grows with the square of the mesh.

use crate::kube::{EndpointSliceDoc, PodDoc, DATAPLANE_MODE, SERVICE_NAME_LABEL};
use crate::parse::Obj;
use std::collections::{HashMap, HashSet};

#[derive(Default)]
pub struct Index<'a> {
    /// (namespace, label key, label value) → the Pods with that label.
    pods_by_label: HashMap<(&'a str, &'a str, &'a str), Vec<&'a Obj<PodDoc>>>,
    pods_by_name: HashMap<(&'a str, &'a str), &'a Obj<PodDoc>>,
    /// (namespace, Service name) → its EndpointSlices.
    slices: HashMap<(&'a str, &'a str), Vec<&'a Obj<EndpointSliceDoc>>>,
    ambient: HashSet<&'a str>,
}

impl<'a> Index<'a> {
    pub fn build(
        pods: &'a [Obj<PodDoc>],
        slices: &'a [Obj<EndpointSliceDoc>],
        namespaces: &'a [Obj<()>],
    ) -> Self {
        // Sized up front, as each table grows to thousands of entries in a
        // large mesh; as many label values as Pods is a guess (an `app` per
        // Service, a few `version`s per namespace), not a bound.
        let mut idx = Index {
            pods_by_label: HashMap::with_capacity(pods.len()),
            pods_by_name: HashMap::with_capacity(pods.len()),
            slices: HashMap::with_capacity(slices.len()),
            ambient: HashSet::new(),
        };
        for pod in pods {
            idx.pods_by_name.insert((pod.ns(), pod.name()), pod);
            for (k, v) in pod.labels.iter() {
                idx.pods_by_label
                    .entry((pod.ns(), k.as_str(), v.as_str()))
                    .or_default()
                    .push(pod);
            }
        }
        for slice in slices {
            if let Some(svc) = slice.labels.get(SERVICE_NAME_LABEL) {
                idx.slices
                    .entry((slice.ns(), svc.as_str()))
                    .or_default()
                    .push(slice);
            }
        }
        idx.ambient = namespaces
            .iter()
            .filter(|n| n.labels.get(DATAPLANE_MODE).map(String::as_str) == Some("ambient"))
            .map(|n| n.name())
            .collect();
        idx
    }

    /// The Pods of `ns` a (non-empty) selector selects, in no particular order.
    pub fn selected<'s>(
        &'s self,
        ns: &'s str,
        selector: &'s waypoint_ir::Labels,
    ) -> impl Iterator<Item = &'s Obj<PodDoc>> + 's {
        // Keys borrowed for less than 'a: the maps are covariant, so they are
        // looked at as holding shorter borrows.
        let by_label: &'s HashMap<(&'s str, &'s str, &'s str), Vec<&'s Obj<PodDoc>>> =
            &self.pods_by_label;
        // Any one of the selector's labels narrows the search to the Pods
        // carrying it; the rest are checked on those.
        let candidates = selector
            .iter()
            .next()
            .and_then(|(k, v)| by_label.get(&(ns, k.as_str(), v.as_str())))
            .map(Vec::as_slice)
            .unwrap_or_default();
        candidates
            .iter()
            .copied()
            .filter(move |p| p.labels.matches(selector))
    }

    pub fn pod<'s>(&'s self, ns: &'s str, name: &'s str) -> Option<&'s Obj<PodDoc>> {
        let by_name: &'s HashMap<(&'s str, &'s str), &'s Obj<PodDoc>> = &self.pods_by_name;
        by_name.get(&(ns, name)).copied()
    }

    pub fn slices<'s>(&'s self, ns: &'s str, service: &'s str) -> &'s [&'s Obj<EndpointSliceDoc>] {
        let slices: &'s HashMap<(&'s str, &'s str), Vec<&'s Obj<EndpointSliceDoc>>> = &self.slices;
        slices
            .get(&(ns, service))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    pub fn is_ambient(&self, ns: &str) -> bool {
        self.ambient.contains(ns)
    }
}
