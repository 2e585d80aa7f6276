//! What one watch keeps of what it delivers. The source loop decides it (it
//! knows the scope) and hands it to the watch when a list begins, so objects
//! the waypoint would drop are dropped in the watch task as they are decoded,
//! instead of queueing behind the source loop first.

use crate::kube::kinds::Kind;
use crate::kube::scope::{keeps, Filter, GatewayRef, WatchId};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

// Invariant: what a watch keeps is fixed for the whole run of the watch. The
// source loop starts a watch again whenever its answer here would change (a
// namespace's filter, the namespaces that matter), so the answer taken when
// a run lists stays right until that run ends. Borrowed in the source loop,
// owned once handed to a watch task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keep<'a> {
    All,
    /// A namespace's Pods or EndpointSlices: those behind a served Service,
    /// none while the namespace has no filter.
    Endpoints(Kind, Option<Cow<'a, Filter>>),
    /// A cluster-wide watch: what names this waypoint, or is in (or, for
    /// routes, about) the namespaces that matter, or the root namespace.
    Cluster {
        kind: Kind,
        gateway: Cow<'a, GatewayRef>,
        wanted: Cow<'a, BTreeSet<String>>,
        root: Cow<'a, str>,
    },
}

impl<'a> Keep<'a> {
    /// What watch `id` keeps, given each endpoint namespace's filter, the
    /// namespaces that matter and the root namespace.
    pub fn new(
        id: &WatchId,
        filters: &'a BTreeMap<String, Filter>,
        wanted: &'a BTreeSet<String>,
        gateway: &'a GatewayRef,
        root: &'a str,
    ) -> Keep<'a> {
        match (&id.namespace, id.kind) {
            (Some(ns), Kind::Pod | Kind::EndpointSlice) => {
                Keep::Endpoints(id.kind, filters.get(ns).map(Cow::Borrowed))
            }
            (None, kind) => Keep::Cluster {
                kind,
                gateway: Cow::Borrowed(gateway),
                wanted: Cow::Borrowed(wanted),
                root: Cow::Borrowed(root),
            },
            _ => Keep::All,
        }
    }

    /// Whether `object` (trimmed) is worth holding.
    pub fn keeps(&self, object: &Value) -> bool {
        match self {
            Keep::All => true,
            Keep::Endpoints(kind, filter) => {
                filter.as_ref().is_some_and(|f| f.keeps(*kind, object))
            }
            Keep::Cluster {
                kind,
                gateway,
                wanted,
                root,
            } => keeps(*kind, object, gateway, wanted, root),
        }
    }

    pub fn into_owned(self) -> Keep<'static> {
        match self {
            Keep::All => Keep::All,
            Keep::Endpoints(kind, filter) => {
                Keep::Endpoints(kind, filter.map(|f| Cow::Owned(f.into_owned())))
            }
            Keep::Cluster {
                kind,
                gateway,
                wanted,
                root,
            } => Keep::Cluster {
                kind,
                gateway: Cow::Owned(gateway.into_owned()),
                wanted: Cow::Owned(wanted.into_owned()),
                root: Cow::Owned(root.into_owned()),
            },
        }
    }
}
