//! Writes [`Desired`](super::Desired) status (of HTTPRoutes, GRPCRoutes and
//! TCPRoutes), from the one replica that holds
//! the Gateway's Lease. `status.parents` is an atomic list shared with other
//! controllers, so each write reads the route, keeps the entries of other
//! controllers, replaces ours, and sends the list back under the route's
//! resourceVersion (a conflict is retried on the next round). A route whose
//! entries already say what ours would is not written, so an unchanged route is
//! written once, however often the config is rebuilt.

use super::{Condition, Desired, ParentStatus, RouteKey, RouteStatus, CONTROLLER_NAME};
use crate::kube::lease::{now, Lease, LEASE_DURATION};
use crate::kube::scope::GatewayRef;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use tokio::sync::watch;

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

pub struct StatusWriter {
    pub client: kube::Client,
    pub gateway: GatewayRef,
    /// This replica, as the Lease's holderIdentity (the pod's name).
    pub identity: String,
}

impl StatusWriter {
    fn lease(&self) -> Lease {
        Lease {
            client: self.client.clone(),
            namespace: self.gateway.namespace.clone(),
            name: format!("{}-status-writer", self.gateway.name),
            identity: self.identity.clone(),
            duration: LEASE_DURATION,
        }
    }

    /// Writes the newest desired status whenever it changes, while leading.
    pub async fn run(
        self,
        mut desired: watch::Receiver<Desired>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut written: BTreeMap<RouteKey, RouteStatus> = BTreeMap::new();
        let mut reported: BTreeSet<super::Rejection> = BTreeSet::new();
        let mut leading = false;
        let lease = self.lease();
        loop {
            match lease.lead().await {
                Ok(now_leading) => {
                    if now_leading != leading {
                        log::info!(
                            "status writer for {}: {}",
                            self.gateway,
                            if now_leading {
                                "this replica leads"
                            } else {
                                "another replica leads"
                            }
                        );
                        // A new leader checks every route again.
                        written.clear();
                    }
                    leading = now_leading;
                }
                Err(e) => {
                    // Unrenewed, the Lease may be another replica's by now.
                    log::warn!("status writer: lease {}: {e}", lease.name);
                    leading = false;
                }
            }
            if leading {
                let want = desired.borrow_and_update().clone();
                self.write_routes(&want, &mut written).await;
                self.raise_events(&want, &mut reported).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(lease.renew_every()) => {}
                r = desired.changed() => if r.is_err() { return },
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn write_routes(&self, want: &Desired, written: &mut BTreeMap<RouteKey, RouteStatus>) {
        // Routes we wrote that no longer name a served Service lose our entries.
        let gone: Vec<(RouteKey, String)> = written
            .iter()
            .filter(|(k, _)| !want.routes.contains_key(*k))
            .map(|(k, s)| (k.clone(), s.api_version.clone()))
            .collect();
        for (key, api_version) in gone {
            if self.put(&key, &api_version, None).await {
                written.remove(&key);
            }
        }
        for (key, status) in &want.routes {
            if written.get(key) == Some(status) {
                continue;
            }
            if self.put(key, &status.api_version, Some(status)).await {
                written.insert(key.clone(), status.clone());
            }
        }
    }

    /// Replaces our entries in one route's `status.parents`; true when the
    /// route says what we want (written now, or already).
    async fn put(
        &self,
        (kind, ns, name): &RouteKey,
        api_version: &str,
        status: Option<&RouteStatus>,
    ) -> bool {
        let ar = route_resource(*kind, api_version);
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &ar);
        let kind = kind.as_str();
        let route = match api.get_status(name).await {
            Ok(r) => r,
            Err(kube::Error::Api(e)) if e.code == 404 => return true,
            Err(e) => {
                log::warn!("status writer: reading {kind} {ns}/{name}: {e}");
                return false;
            }
        };
        let current: Vec<Value> = route.data["status"]["parents"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let ours_now: Vec<&Value> = current
            .iter()
            .filter(|p| p["controllerName"] == CONTROLLER_NAME)
            .collect();
        let mut parents: Vec<Value> = current
            .iter()
            .filter(|p| p["controllerName"] != CONTROLLER_NAME)
            .cloned()
            .collect();
        if let Some(status) = status {
            parents.extend(
                status
                    .parents
                    .iter()
                    .map(|p| entry(p, status.generation, &ours_now)),
            );
        }
        if parents == current {
            return true;
        }
        let patch = json!({
            "metadata": {"resourceVersion": route.metadata.resource_version},
            "status": {"parents": parents},
        });
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                log::info!("status: {kind} {ns}/{name} updated");
                true
            }
            Err(e) => {
                log::debug!("status writer: writing {kind} {ns}/{name}: {e}; retrying");
                false
            }
        }
    }

    async fn raise_events(&self, want: &Desired, reported: &mut BTreeSet<super::Rejection>) {
        // A rejection that was fixed is forgotten, so it is reported again if it comes back.
        reported.retain(|r| want.events.contains(r));
        let ar = resource("events.k8s.io", "v1", "Event", "events");
        for r in &want.events {
            if reported.contains(r) {
                continue;
            }
            let ns = if r.resource.namespace.is_empty() {
                "default"
            } else {
                r.resource.namespace.as_str()
            };
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &ar);
            let mut event = DynamicObject::new("", &ar);
            event.metadata.name = None;
            event.metadata.generate_name = Some(format!("{}.", r.resource.name));
            event.metadata.namespace = Some(ns.to_string());
            event.data = json!({
                "eventTime": now(),
                "type": "Warning",
                "reason": "Rejected",
                "action": "Validate",
                "note": format!("rejected by waypoint {}: {}", self.gateway, r.message),
                "reportingController": CONTROLLER_NAME,
                "reportingInstance": self.identity,
                "regarding": {
                    "apiVersion": api_version(r.resource.kind),
                    "kind": r.resource.kind.as_str(),
                    "namespace": r.resource.namespace,
                    "name": r.resource.name,
                },
            });
            match api.create(&PostParams::default(), &event).await {
                Ok(_) => {
                    reported.insert(r.clone());
                }
                Err(e) => log::warn!("status writer: an Event for {}: {e}", r.resource),
            }
        }
    }
}

/// A route kind at the version it was read (TCPRoute: `v1` or `v1alpha2`).
fn route_resource(kind: waypoint_ir::ResourceKind, api_version: &str) -> ApiResource {
    let (group, version) = api_version
        .split_once('/')
        .unwrap_or(("gateway.networking.k8s.io", "v1"));
    let plural = format!("{}s", kind.as_str().to_ascii_lowercase());
    resource(group, version, kind.as_str(), &plural)
}

fn api_version(kind: waypoint_ir::ResourceKind) -> &'static str {
    use waypoint_ir::ResourceKind as K;
    match kind {
        K::Service | K::Pod | K::Namespace | K::ConfigMap => "v1",
        K::EndpointSlice => "discovery.k8s.io/v1",
        K::ServiceEntry | K::WorkloadEntry | K::VirtualService | K::DestinationRule => {
            "networking.istio.io/v1"
        }
        K::HTTPRoute | K::GRPCRoute | K::TCPRoute | K::Gateway => "gateway.networking.k8s.io/v1",
        K::BackendTrafficPolicy => "gateway.envoyproxy.io/v1alpha1",
        K::AuthorizationPolicy | K::RequestAuthentication => "security.istio.io/v1",
    }
}

/// One `status.parents[]` entry; a condition keeps its lastTransitionTime while
/// its status stays the same, as the API's conventions ask.
fn entry(p: &ParentStatus, generation: i64, previous: &[&Value]) -> Value {
    let before = previous.iter().find(|e| e["parentRef"] == p.parent_ref);
    let conditions: Vec<Value> = p
        .conditions
        .iter()
        .map(|c: &Condition| {
            let status = if c.ok { "True" } else { "False" };
            let old = before.and_then(|b| {
                b["conditions"]
                    .as_array()?
                    .iter()
                    .find(|o| o["type"] == c.kind)
                    .cloned()
            });
            let since = old
                .filter(|o| o["status"] == status)
                .and_then(|o| o["lastTransitionTime"].as_str().map(String::from))
                .unwrap_or_else(super::condition_time);
            json!({
                "type": c.kind,
                "status": status,
                "reason": c.reason,
                "message": c.message,
                "observedGeneration": generation,
                "lastTransitionTime": since,
            })
        })
        .collect();
    json!({"parentRef": p.parent_ref, "controllerName": CONTROLLER_NAME, "conditions": conditions})
}
