//! A Gateway's `spec.infrastructure.parametersRef`: a ConfigMap in its
//! namespace whose keys overlay the objects deployed for it, as Istio reads
//! its own (`deployment`, `service`, `serviceAccount`, `horizontalPodAutoscaler`,
//! `podDisruptionBudget`, each a YAML fragment of that object). The fragment is
//! merged as a Kubernetes strategic merge patch merges it: objects field by
//! field, `null` removing a field, and the lists Kubernetes merges by key
//! (containers, env, volumes, volume mounts by `name`; container ports by
//! `containerPort`, Service ports by `port`) entry by entry; other lists are
//! replaced. A budget or autoscaler key makes that object exist.

use super::gateway::Invalid;
use serde_json::Value;
use std::collections::BTreeMap;

/// The ConfigMap keys and the kinds they overlay.
const KEYS: [(&str, &str); 5] = [
    ("deployment", "Deployment"),
    ("service", "Service"),
    ("serviceAccount", "ServiceAccount"),
    ("horizontalPodAutoscaler", "HorizontalPodAutoscaler"),
    ("podDisruptionBudget", "PodDisruptionBudget"),
];

/// Overlays by kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params(BTreeMap<&'static str, Value>);

fn invalid(message: String) -> Invalid {
    Invalid {
        reason: "InvalidParameters",
        message,
    }
}

impl Params {
    /// Reads a ConfigMap's `data`; `name` is for the messages.
    pub fn from_config_map(name: &str, cm: &Value) -> Result<Params, Invalid> {
        let mut out = BTreeMap::new();
        let data = cm
            .get("data")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for (key, text) in data {
            let Some(&(_, kind)) = KEYS.iter().find(|(k, _)| *k == key) else {
                let known: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
                return Err(invalid(format!(
                    "ConfigMap {name}: data.{key}: unknown key (expected one of {})",
                    known.join(", ")
                )));
            };
            let text = text.as_str().unwrap_or_default();
            let overlay: Value = serde_yaml_ng::from_str(text)
                .map_err(|e| invalid(format!("ConfigMap {name}: data.{key}: {e}")))?;
            if !overlay.is_object() {
                return Err(invalid(format!(
                    "ConfigMap {name}: data.{key}: a YAML object of the {kind} is expected"
                )));
            }
            out.insert(kind, overlay);
        }
        Ok(Params(out))
    }

    /// Whether the parameters ask for an object of `kind` to exist.
    pub fn wants(&self, kind: &str) -> bool {
        self.0.contains_key(kind)
    }

    /// Merges each object's overlay into it.
    pub fn apply(&self, objects: &mut [Value]) {
        for object in objects {
            let kind = object["kind"].as_str().unwrap_or_default().to_string();
            if let Some(overlay) = self.0.get(kind.as_str()) {
                merge(object, overlay, "");
            }
        }
    }
}

/// Strategic merge of `patch` into `target`; `field` is the name of the
/// field being merged, which picks a list's merge key.
pub fn merge(target: &mut Value, patch: &Value, field: &str) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v, k);
                }
            }
        }
        (Value::Array(t), Value::Array(p)) if merge_key(field, p).is_some() => {
            let key = merge_key(field, p).expect("checked");
            for item in p {
                let id = item.get(key);
                match t.iter_mut().find(|x| x.get(key) == id) {
                    Some(existing) => merge(existing, item, ""),
                    None => t.push(item.clone()),
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// The key Kubernetes' strategic merge uses for the list `field`, when every
/// entry of the patch carries it.
fn merge_key(field: &str, patch: &[Value]) -> Option<&'static str> {
    let key = match field {
        "containers" | "initContainers" | "env" | "volumes" | "volumeMounts"
        | "imagePullSecrets" => "name",
        "ports" if patch.iter().all(|p| p.get("containerPort").is_some()) => "containerPort",
        "ports" => "port",
        _ => return None,
    };
    patch.iter().all(|p| p.get(key).is_some()).then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lists_merge_by_key_as_kubernetes_merges_them() {
        let mut deploy = json!({"spec": {"replicas": 1, "template": {"spec": {
            "terminationGracePeriodSeconds": 15,
            "containers": [{"name": "waypoint", "image": "w:1",
                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                "env": [{"name": "A", "value": "1"}],
                "ports": [{"containerPort": 15020, "name": "metrics"}]}]}}}});
        let overlay = json!({"spec": {"replicas": null, "template": {"spec": {
            "terminationGracePeriodSeconds": 120,
            "tolerations": [{"key": "dedicated", "operator": "Exists"}],
            "containers": [{"name": "waypoint",
                "resources": {"requests": {"cpu": "1"}},
                "env": [{"name": "B", "value": "2"}]}]}}}});
        merge(&mut deploy, &overlay, "");
        let spec = &deploy["spec"]["template"]["spec"];
        assert!(deploy["spec"].get("replicas").is_none(), "null removes");
        assert_eq!(spec["terminationGracePeriodSeconds"], 120);
        let c = &spec["containers"];
        assert_eq!(c.as_array().unwrap().len(), 1, "merged, not appended");
        assert_eq!(c[0]["image"], "w:1", "untouched fields stay");
        assert_eq!(
            c[0]["resources"]["requests"],
            json!({"cpu": "1", "memory": "64Mi"})
        );
        assert_eq!(
            c[0]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
        );
        assert_eq!(spec["tolerations"][0]["key"], "dedicated");
    }

    #[test]
    fn a_config_map_says_what_it_cannot_be() {
        let ok =
            json!({"data": {"horizontalPodAutoscaler": "spec: {minReplicas: 2, maxReplicas: 5}"}});
        let p = Params::from_config_map("shop/wp", &ok).unwrap();
        assert!(p.wants("HorizontalPodAutoscaler") && !p.wants("PodDisruptionBudget"));
        let unknown = json!({"data": {"deploymnet": "spec: {}"}});
        let e = Params::from_config_map("shop/wp", &unknown).unwrap_err();
        assert_eq!(e.reason, "InvalidParameters");
        assert!(
            e.message.contains("data.deploymnet: unknown key"),
            "{}",
            e.message
        );
        let bad = json!({"data": {"service": "spec: [unclosed"}});
        let e = Params::from_config_map("shop/wp", &bad).unwrap_err();
        assert!(
            e.message.starts_with("ConfigMap shop/wp: data.service:"),
            "{}",
            e.message
        );
    }
}
