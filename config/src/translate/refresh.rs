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

/// `previous` with the endpoints of the Services among `objects` translated
/// again from the Pods and EndpointSlices among them (with the Namespaces, for
/// who is in the mesh). `None` when the change is not one of endpoints alone
/// (a Service's ports or addresses differ, or it is new) or says anything a
/// whole translation would report: the caller then translates everything.
pub fn refresh_endpoints(
    previous: &Snapshot,
    objects: Vec<serde_json::Value>,
    opts: &Options,
) -> Option<Snapshot> {
    let mut diags = Vec::new();
    let res = parse::parse_values(objects.into_iter().map(|o| ("", o)), &mut diags);
    let mut cx = Cx {
        res: &res,
        opts,
        diags: &mut diags,
    };
    let mut fresh = Vec::new();
    for svc in &res.services {
        let new = services::kube_service(&mut cx, svc);
        let at = previous.services.iter().position(|s| s.source == svc.id)?;
        let old = &previous.services[at];
        if old.ports != new.ports || old.addresses != new.addresses {
            return None;
        }
        fresh.push((at, new.endpoints));
    }
    if !diags.is_empty() {
        return None;
    }
    let mut snapshot = previous.clone();
    for (at, endpoints) in fresh {
        snapshot.services[at].set_endpoints(endpoints);
    }
    snapshot.index_workloads();
    Some(snapshot)
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
        let refreshed = refresh_endpoints(&previous, world(&after), &opts).unwrap();
        assert_eq!(json_of(&refreshed), json_of(&whole));
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
        assert!(refresh_endpoints(&previous, moved, &opts).is_none());
        let mut broken = world(&pods);
        broken[2]["status"]["podIP"] = json!("10.1.0.999");
        assert!(refresh_endpoints(&previous, broken, &opts).is_none());
        let mut unknown = world(&pods);
        unknown[1]["metadata"]["name"] = json!("details");
        assert!(refresh_endpoints(&previous, unknown, &opts).is_none());
    }
}
