//! Our GatewayClass's own status: `Accepted` once a controller of its name
//! runs, as Gateway API asks of every implementation for its classes.

use super::{CLASS_NAME, CONTROLLER_NAME};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{json, Value};
use std::time::Duration;

fn resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "gateway.networking.k8s.io",
        "v1",
        "GatewayClass",
    ))
}

/// Accepts the class whenever it lacks the condition (installed, or
/// re-created, after the controller started); checks again every `every`.
pub async fn accept(client: kube::Client, every: Duration) {
    let api: Api<DynamicObject> = Api::all_with(client, &resource());
    loop {
        match api.get_opt(CLASS_NAME).await {
            Ok(Some(class)) => {
                let value = serde_json::to_value(&class).unwrap_or_default();
                if let Some(status) = wanted(&value) {
                    let patch = Patch::Merge(json!({"status": status}));
                    if let Err(e) = api
                        .patch_status(CLASS_NAME, &PatchParams::default(), &patch)
                        .await
                    {
                        log::warn!("controller: accepting GatewayClass {CLASS_NAME}: {e}");
                    }
                }
            }
            Ok(None) => log::debug!("controller: no GatewayClass {CLASS_NAME} yet"),
            Err(e) => log::warn!("controller: reading GatewayClass {CLASS_NAME}: {e}"),
        }
        tokio::time::sleep(every).await;
    }
}

/// The status to write, if the class names our controller and is not yet
/// accepted at its generation.
fn wanted(class: &Value) -> Option<Value> {
    if class
        .pointer("/spec/controllerName")
        .and_then(Value::as_str)
        != Some(CONTROLLER_NAME)
    {
        return None;
    }
    let generation = class
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let accepted = class
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| {
            c["type"] == "Accepted"
                && c["status"] == "True"
                && c["observedGeneration"] == generation
        });
    (!accepted).then(|| {
        let now = crate::kube::status::condition_time();
        json!({"conditions": [{
            "type": "Accepted", "status": "True", "reason": "Accepted",
            "message": "handled by waypoint controller", "observedGeneration": generation,
            "lastTransitionTime": now,
        }]})
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_class_and_only_once_per_generation() {
        let mut class = json!({"metadata": {"generation": 2},
            "spec": {"controllerName": CONTROLLER_NAME}});
        let status = wanted(&class).unwrap();
        assert_eq!(status["conditions"][0]["observedGeneration"], 2);
        class["status"] = status;
        assert!(wanted(&class).is_none());
        class["metadata"]["generation"] = json!(3);
        assert!(
            wanted(&class).is_some(),
            "a new generation is accepted again"
        );
        let other = json!({"spec": {"controllerName": "istio.io/mesh-controller"}});
        assert!(wanted(&other).is_none());
    }
}
