//! The controller loop: kube-runtime's `Controller` over Gateways, which also
//! wakes for any change to what it deployed (owner references), so a
//! Deployment edited by hand is applied over again and a pod turning ready
//! updates the Gateway's status. Everything is server-side applied with one
//! field manager and `force`: what the Gateway says wins, and fields others
//! own (an autoscaler's replica count, a mutating webhook's) are left alone.
//! Deleting a Gateway leaves its namespaced objects to Kubernetes' garbage
//! collector (owner references); its ClusterRoleBinding, and its RoleBinding
//! in Istio's root namespace, which the Gateway cannot own (another scope,
//! another namespace), are deleted here, held by a finalizer until then.

use super::gateway::{self, Stand};
use super::params::Params;
use super::render::{self, Settings};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

pub const FIELD_MANAGER: &str = "pingora-waypoint-controller";
/// Held on each Gateway of our class until its bindings are deleted (named
/// for the first of them; Gateways already hold it under this name).
pub const FINALIZER: &str = "pingora-waypoint.dev/cluster-role-binding";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("applying {kind} {namespace}/{name}: {source}")]
    Apply {
        kind: String,
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error("writing the status of Gateway {0}: {1}")]
    Status(String, kube::Error),
    #[error("reading {0}: {1}")]
    Read(String, kube::Error),
}

pub struct Context {
    pub client: kube::Client,
    pub settings: Settings,
    pub cluster_domain: String,
}

fn gateway_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "gateway.networking.k8s.io",
        "v1",
        "Gateway",
    ))
}

/// Where each kind `render` makes is served.
fn resource_of(object: &Value) -> ApiResource {
    let api_version = object["apiVersion"].as_str().unwrap_or_default();
    let kind = object["kind"].as_str().unwrap_or_default();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let plural = format!("{}s", kind.to_ascii_lowercase());
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), &plural)
}

/// Runs until the process ends, or its future is dropped (the Lease lost).
pub async fn run(ctx: Arc<Context>) {
    let client = ctx.client.clone();
    let class = super::class::accept(client.clone(), Duration::from_secs(60));
    let gateways: Api<DynamicObject> = Api::all_with(client.clone(), &gateway_resource());
    // Only what we deployed: every object we make carries our class's label.
    let ours = watcher::Config::default().labels(&format!(
        "gateway.networking.k8s.io/gateway-class-name={}",
        super::CLASS_NAME
    ));
    let controller = Controller::new_with(gateways, watcher::Config::default(), gateway_resource())
        .owns(Api::<Deployment>::all(client.clone()), ours.clone())
        .owns(Api::<Service>::all(client.clone()), ours.clone())
        .owns(Api::<ServiceAccount>::all(client), ours)
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                log::debug!("controller: {e}");
            }
        });
    // Both end together when the Lease is lost: nothing keeps running detached.
    tokio::select! {
        () = controller => {}
        () = class => {}
    }
}

/// The Gateway's parameters: none without a parametersRef; `Err(Invalid)`
/// when the ConfigMap is missing or malformed (the Gateway is then not
/// accepted, as Gateway API asks).
async fn parameters(
    client: &kube::Client,
    ns: &str,
    config_map: Option<String>,
) -> Result<Result<Params, gateway::Invalid>, Error> {
    let Some(name) = config_map else {
        return Ok(Ok(Params::default()));
    };
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cm = api
        .get_opt(&name)
        .await
        .map_err(|e| Error::Read(format!("ConfigMap {ns}/{name}"), e))?;
    Ok(match cm {
        None => Err(gateway::Invalid {
            reason: "InvalidParameters",
            message: format!("spec.infrastructure.parametersRef: ConfigMap {ns}/{name} not found"),
        }),
        Some(cm) => Params::from_config_map(
            &format!("{ns}/{name}"),
            &serde_json::to_value(&cm).unwrap_or_default(),
        ),
    })
}

/// Applies what `waypoint` needs and says whether a pod of it is ready.
async fn deploy(
    ctx: &Context,
    ns: &str,
    waypoint: &render::Waypoint,
    params: &Params,
    uid: &str,
) -> Result<Stand, Error> {
    let objects = render::render_with(waypoint, &ctx.settings, params);
    for object in &objects {
        apply(&ctx.client, object).await?;
    }
    // A budget or autoscaler no longer asked for goes.
    for kind in render::OPTIONAL_KINDS {
        if !objects.iter().any(|o| o["kind"] == kind.1) {
            remove(&ctx.client, ns, kind, &waypoint.name, uid).await?;
        }
    }
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let ready = deployments
        .get_opt(&waypoint.name)
        .await
        .map_err(|e| Error::Read(format!("Deployment {ns}/{}", waypoint.name), e))?
        .and_then(|d| d.status?.ready_replicas)
        .unwrap_or(0);
    Ok(if ready > 0 {
        Stand::Ready {
            hostname: format!("{}.{ns}.svc.{}", waypoint.name, ctx.cluster_domain),
        }
    } else {
        Stand::Pending
    })
}

fn error_policy(_gw: Arc<DynamicObject>, e: &Error, _ctx: Arc<Context>) -> Action {
    log::warn!("controller: {e}; trying again in 5 s");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(gw: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action, Error> {
    let value = serde_json::to_value(gw.as_ref()).unwrap_or_default();
    let ns = gw.metadata.namespace.clone().unwrap_or_default();
    let name = gw.metadata.name.clone().unwrap_or_default();
    let finalizers = gw.metadata.finalizers.clone().unwrap_or_default();
    let held = finalizers.iter().any(|f| f == FINALIZER);
    let ours = value
        .pointer("/spec/gatewayClassName")
        .and_then(Value::as_str)
        == Some(super::CLASS_NAME);
    if gw.metadata.deletion_timestamp.is_some() || !ours {
        if held {
            release(&ctx, &gw, &finalizers, ours).await?;
        }
        return Ok(Action::await_change());
    }
    if !held {
        // Before anything cluster-scoped exists that only we would delete.
        let mut with = finalizers.clone();
        with.push(FINALIZER.to_string());
        set_finalizers(&ctx.client, &gw, &with).await?;
    }
    let uid = gw.metadata.uid.clone().unwrap_or_default();
    let read = match gateway::read(&value) {
        Ok((waypoint, config_map)) => parameters(&ctx.client, &ns, config_map)
            .await?
            .map(|params| (waypoint, params)),
        Err(invalid) => Err(invalid),
    };
    let stand = match read {
        Err(invalid) => {
            log::warn!(
                "controller: Gateway {ns}/{name} not accepted: {}",
                invalid.message
            );
            Stand::Invalid(invalid)
        }
        Ok((waypoint, params)) => deploy(&ctx, &ns, &waypoint, &params, &uid).await?,
    };
    let status = gateway::status(&value, &stand, &crate::kube::status::condition_time());
    if differs_in_more_than_times(&value, &status) {
        let api: Api<DynamicObject> =
            Api::namespaced_with(ctx.client.clone(), &ns, &gateway_resource());
        api.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .map_err(|e| Error::Status(format!("{ns}/{name}"), e))?;
    }
    // Owned objects wake the controller on change. A parameters ConfigMap
    // is not watched (that would be every ConfigMap in the cluster): it is
    // read again every half minute instead.
    let parameterised = value
        .pointer("/spec/infrastructure/parametersRef")
        .is_some();
    Ok(Action::requeue(Duration::from_secs(if parameterised {
        30
    } else {
        300
    })))
}

/// Whether the stored status differs from the new one in more than its
/// timestamps: an unchanged status is not written again, so that our own
/// write does not wake us into another.
fn differs_in_more_than_times(gw: &Value, status: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        strip_times(&mut v);
        v
    };
    gw.get("status").map(strip) != Some(strip(status))
}

fn strip_times(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("lastTransitionTime");
            m.values_mut().for_each(strip_times);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_times),
        _ => {}
    }
}

/// The Gateway's bindings are deleted (owner references cannot reach a
/// cluster-scoped object, nor one in another namespace), then our finalizer
/// let go, so the Gateway can go too. A Gateway that stays but is no longer
/// of our class (`ours` false) also loses what was deployed for it, which the
/// garbage collector would leave while the Gateway lives.
async fn release(
    ctx: &Context,
    gw: &DynamicObject,
    finalizers: &[String],
    ours: bool,
) -> Result<(), Error> {
    let client = &ctx.client;
    let ns = gw.metadata.namespace.as_deref().unwrap_or_default();
    let name = gw.metadata.name.as_deref().unwrap_or_default();
    let binding = render::role_binding_name(ns, name);
    let root = ctx.settings.root_namespace.as_str();
    for (kind, namespace) in [("ClusterRoleBinding", None), ("RoleBinding", Some(root))] {
        let ar = resource_of(&json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind}));
        let api: Api<DynamicObject> = match namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        };
        match api.delete(&binding, &Default::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(source) => {
                return Err(Error::Apply {
                    kind: kind.into(),
                    namespace: namespace.unwrap_or_default().into(),
                    name: binding,
                    source,
                })
            }
        }
    }
    if !ours {
        let uid = gw.metadata.uid.as_deref().unwrap_or_default();
        let account = gw
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(render::SERVICE_ACCOUNT_ANNOTATION))
            .map_or(name, String::as_str);
        for kind in render::OPTIONAL_KINDS
            .into_iter()
            .chain([("apps/v1", "Deployment"), ("v1", "Service")])
        {
            remove(client, ns, kind, name, uid).await?;
        }
        remove(client, ns, ("v1", "ServiceAccount"), account, uid).await?;
    }
    let rest: Vec<String> = finalizers
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    set_finalizers(client, gw, &rest).await
}

/// Deletes `kind` `name` if this Gateway (`owner`, its uid) owns it: what has
/// that name but is someone else's stays.
async fn remove(
    client: &kube::Client,
    ns: &str,
    (api_version, kind): (&str, &str),
    name: &str,
    owner: &str,
) -> Result<(), Error> {
    let ar = resource_of(&json!({"apiVersion": api_version, "kind": kind}));
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    let failed = |source| Error::Apply {
        kind: kind.to_string(),
        namespace: ns.to_string(),
        name: name.to_string(),
        source,
    };
    let Some(object) = api.get_opt(name).await.map_err(failed)? else {
        return Ok(());
    };
    let owned = object
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == owner);
    if !owned {
        return Ok(());
    }
    let params = kube::api::DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: object.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(source) => Err(failed(source)),
    }
}

/// Sets the Gateway's finalizers to `finalizers`, under the resourceVersion
/// it was read at: a finalizer another controller added meanwhile is not
/// overwritten (the conflict is retried by the error policy).
async fn set_finalizers(
    client: &kube::Client,
    gw: &DynamicObject,
    finalizers: &[String],
) -> Result<(), Error> {
    let ns = gw.metadata.namespace.as_deref().unwrap_or_default();
    let name = gw.metadata.name.as_deref().unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &gateway_resource());
    let patch = json!({"metadata": {
        "finalizers": finalizers,
        "resourceVersion": gw.metadata.resource_version,
    }});
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(()),
        // Already gone: nothing left to hold.
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(Error::Status(format!("{ns}/{name} (finalizers)"), e)),
    }
}

async fn apply(client: &kube::Client, object: &Value) -> Result<(), Error> {
    let ar = resource_of(object);
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    // Cluster-scoped objects (the ClusterRoleBinding) carry no namespace; the
    // mesh config's RoleBinding carries the root namespace, not the Gateway's.
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str);
    let api: Api<DynamicObject> = match namespace {
        Some(own) => Api::namespaced_with(client.clone(), own, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map(|_| ())
    .map_err(|source| Error::Apply {
        kind: ar.kind.clone(),
        namespace: namespace.unwrap_or_default().to_string(),
        name: name.to_string(),
        source,
    })
}
