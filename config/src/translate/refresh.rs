//! An endpoint change applied to the previous snapshot: only the Services it
//! concerns have their endpoints translated again, by the very code a whole
//! translation runs, and the rest of the snapshot (routes, policies, the other
//! Services) is kept as it was. Pods come and go far more often than anything
//! else changes, and this is what makes each cost microseconds, not a whole
//! translation.

use super::{services, Cx};
use crate::parse;
use crate::Options;
use waypoint_ir::Snapshot;

/// What an endpoint change does to the snapshot in use.
#[derive(Debug)]
pub enum Refresh {
    /// Nothing: the Services' endpoints are what they were.
    Unchanged,
    /// The snapshot to use instead.
    Changed(Box<Snapshot>),
    /// Not a change of endpoints alone (a Service's ports or addresses
    /// differ, or it is new), or one a whole translation would report on:
    /// translate everything.
    Whole,
}

/// `previous` with the endpoints of the Services among `objects` translated
/// again from the Pods and EndpointSlices among them (with the Namespaces, for
/// who is in the mesh).
pub fn refresh_endpoints(
    previous: &Snapshot,
    objects: Vec<serde_json::Value>,
    opts: &Options,
) -> Refresh {
    let mut diags = Vec::new();
    let res = parse::parse_values(objects.into_iter().map(|o| ("", o)), &mut diags);
    let idx = super::index::Index::build(&res.pods, &res.slices, &res.namespaces);
    let mut cx = Cx {
        res: &res,
        opts,
        diags: &mut diags,
    };
    let mut fresh = Vec::new();
    for svc in &res.services {
        let new = services::kube_service(&mut cx, &idx, svc);
        let Some(at) = previous.services.iter().position(|s| s.source == svc.id) else {
            return Refresh::Whole;
        };
        let old = &previous.services[at];
        if old.ports != new.ports || old.addresses != new.addresses {
            return Refresh::Whole;
        }
        if old.endpoints != new.endpoints {
            fresh.push((at, new.endpoints));
        }
    }
    if !diags.is_empty() {
        return Refresh::Whole;
    }
    if fresh.is_empty() {
        return Refresh::Unchanged;
    }
    let mut snapshot = previous.clone();
    for (at, endpoints) in fresh {
        std::sync::Arc::make_mut(&mut snapshot.services[at]).set_endpoints(endpoints);
    }
    snapshot.index_workloads();
    Refresh::Changed(Box::new(snapshot))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn world(pods: &[(&str, &str, &str)]) -> Vec<Value> {
        let mut objects = vec![
            json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": "shop", "labels": {"istio.io/dataplane-mode": "ambient"}}}),
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "reviews", "namespace": "shop"},
                "spec": {"clusterIP": "10.96.0.9", "selector": {"app": "reviews"},
                    "ports": [{"name": "http", "port": 9080, "targetPort": "http"}]}}),
        ];
        for (name, ip, version) in pods {
            objects.push(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "shop",
                    "labels": {"app": "reviews", "version": version}},
                "spec": {"serviceAccountName": "reviews",
                    "containers": [{"ports": [{"name": "http", "containerPort": 8080}]}]},
                "status": {"podIP": ip, "phase": "Running"}}));
        }
        objects
    }

    fn routed(pods: &[(&str, &str, &str)]) -> Vec<Value> {
        let mut objects = world(pods);
        objects.push(
            json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "reviews", "namespace": "shop"},
            "spec": {"host": "reviews", "subsets": [{"name": "v2", "labels": {"version": "v2"}}]}}),
        );
        objects.push(json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "reviews", "namespace": "shop"},
            "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews", "subset": "v2"}}]}]}}));
        objects
    }

    fn json_of(s: &Snapshot) -> (Value, Vec<String>) {
        let mut workloads: Vec<String> = s.by_workload.iter().map(|e| format!("{e:?}")).collect();
        workloads.sort();
        (serde_json::to_value(s).unwrap(), workloads)
    }

    #[test]
    fn an_endpoint_change_gives_what_a_whole_translation_gives() {
        let opts = Options::default();
        let before = [("r1", "10.1.0.1", "v1"), ("r2", "10.1.0.2", "v2")];
        let after = [("r2", "10.1.0.2", "v1"), ("r3", "10.1.0.3", "v2")];
        let previous = crate::load_objects(&routed(&before), &opts).snapshot;
        let whole = crate::load_objects(&routed(&after), &opts).snapshot;
        let Refresh::Changed(refreshed) = refresh_endpoints(&previous, world(&after), &opts) else {
            panic!("the endpoints changed");
        };
        assert_eq!(json_of(&refreshed), json_of(&whole));
        let again = refresh_endpoints(&refreshed, world(&after), &opts);
        assert!(matches!(again, Refresh::Unchanged), "{again:?}");
        assert_ne!(
            json_of(&previous),
            json_of(&whole),
            "the change changed something"
        );
    }

    #[test]
    fn anything_but_endpoints_is_left_to_a_whole_translation() {
        let opts = Options::default();
        let pods = [("r1", "10.1.0.1", "v1")];
        let previous = crate::load_objects(&routed(&pods), &opts).snapshot;
        let mut moved = world(&pods);
        moved[1]["spec"]["ports"][0]["port"] = json!(9081);
        assert!(matches!(
            refresh_endpoints(&previous, moved, &opts),
            Refresh::Whole
        ));
        let mut broken = world(&pods);
        broken[2]["status"]["podIP"] = json!("10.1.0.999");
        assert!(matches!(
            refresh_endpoints(&previous, broken, &opts),
            Refresh::Whole
        ));
        let mut unknown = world(&pods);
        unknown[1]["metadata"]["name"] = json!("details");
        assert!(matches!(
            refresh_endpoints(&previous, unknown, &opts),
            Refresh::Whole
        ));
    }
}
