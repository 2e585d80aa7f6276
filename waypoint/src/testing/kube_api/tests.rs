//! The proof that the fake speaks the real protocol: everything here goes through
//! the real `kube::Client` and `kube::runtime::watcher`.

use super::{KubeApi, Verb};
use futures::{Stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::{reflector, watcher};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(10);

fn service(name: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "http", "port": 80}]},
    })
}

fn pod(namespace: &str, name: &str, ip: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "a"}},
        "spec": {"containers": [{"name": "app", "image": "app"}]},
        "status": {"podIP": ip},
    })
}

fn http_route(name: &str) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "reviews"}],
                 "rules": [{"backendRefs": [{"name": "reviews-v1", "port": 9080}]}]},
    })
}

fn http_routes(client: kube::Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    Api::namespaced_with(
        client,
        "default",
        &ApiResource::from_gvk_with_plural(&gvk, "httproutes"),
    )
}

async fn next<T>(stream: &mut (impl Stream<Item = T> + Unpin)) -> T {
    let next = tokio::time::timeout(TIMEOUT, stream.next()).await;
    next.expect("an event within the timeout")
        .expect("the stream goes on")
}

/// Polls `done` until it holds, failing the test after the timeout.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn api_error(e: &kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(status) => (status.code, status.reason.clone()),
        other => panic!("not an API error: {other:?}"),
    }
}

/// A reflector fed by a watcher, as a source would run one. Errors are kept and
/// retried after 20 ms, standing in for the source's backoff.
struct Mirror<K: kube::Resource + Clone + 'static>
where
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    store: reflector::Store<K>,
    errors: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl<K> Mirror<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    fn start(api: Api<K>, config: watcher::Config) -> Mirror<K> {
        let (store, writer) = reflector::store();
        let errors = Arc::new(Mutex::new(Vec::new()));
        let seen = errors.clone();
        let task = tokio::spawn(async move {
            let mut events = reflector::reflector(writer, watcher(api, config)).boxed();
            while let Some(event) = events.next().await {
                if let Err(e) = event {
                    seen.lock().unwrap().push(e.to_string());
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
        Mirror {
            store,
            errors,
            task,
        }
    }

    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .store
            .state()
            .iter()
            .map(|o| o.meta().name.clone().unwrap_or_default())
            .collect();
        names.sort();
        names
    }

    async fn converges_to(&self, want: &[&str]) {
        eventually(&format!("the mirror to hold {want:?}"), || {
            self.names() == want
        })
        .await;
    }

    fn errors(&self) -> Vec<String> {
        self.errors.lock().unwrap().clone()
    }
}

impl<K: kube::Resource + Clone + 'static> Drop for Mirror<K>
where
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn a_client_from_the_kubeconfig_talks_plain_http() {
    let api = KubeApi::start().await;
    api.apply(service("reviews", json!({})));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(api.kubeconfig(dir.path())).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    assert_eq!(config.cluster_url.scheme_str(), Some("http"));
    assert_eq!(config.default_namespace, "default");
    let client = kube::Client::try_from(config).unwrap();

    let services: Api<Service> = Api::default_namespaced(client.clone());
    let listed = services.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(
        listed.items[0].spec.as_ref().unwrap().cluster_ip.as_deref(),
        Some("10.96.0.1")
    );
    assert_eq!(
        listed.metadata.resource_version,
        Some(api.resource_version().to_string())
    );
    assert_eq!(client.apiserver_version().await.unwrap().major, "1");
    let list = &api.requests_to(Verb::List, "services")[0];
    assert_eq!(
        (list.path.as_str(), list.code),
        ("/api/v1/namespaces/default/services", 200)
    );
}

#[tokio::test]
async fn typed_writes_get_the_api_servers_answers() {
    let api = KubeApi::start().await;
    let services: Api<Service> = Api::default_namespaced(api.client());
    let created = services
        .create(
            &PostParams::default(),
            &serde_json::from_value(service("a", json!({}))).unwrap(),
        )
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(meta.uid.is_some() && meta.creation_timestamp.is_some());
    assert_eq!(
        (meta.generation, meta.resource_version.clone()),
        (Some(1), Some(api.resource_version().to_string()))
    );

    let again = services
        .create(&PostParams::default(), &created)
        .await
        .unwrap_err();
    assert_eq!(api_error(&again), (409, "AlreadyExists".into()));
    assert_eq!(
        api_error(&services.get("missing").await.unwrap_err()),
        (404, "NotFound".into())
    );
    assert!(services.get_opt("missing").await.unwrap().is_none());

    let mut changed = created.clone();
    changed.spec.as_mut().unwrap().cluster_ip = Some("10.96.0.2".into());
    let replaced = services
        .replace("a", &PostParams::default(), &changed)
        .await
        .unwrap();
    assert_eq!(replaced.metadata.generation, Some(2));
    assert_eq!(replaced.metadata.uid, created.metadata.uid);
    let stale = services
        .replace("a", &PostParams::default(), &changed)
        .await
        .unwrap_err();
    assert_eq!(api_error(&stale), (409, "Conflict".into()));

    let labels = Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}}));
    let patched = services
        .patch("a", &PatchParams::default(), &labels)
        .await
        .unwrap();
    assert_eq!(patched.metadata.labels.unwrap()["x"], "y");
    assert_eq!(
        patched.metadata.generation,
        Some(2),
        "metadata changes keep the generation"
    );
    let same = services
        .patch("a", &PatchParams::default(), &labels)
        .await
        .unwrap();
    assert_eq!(
        same.metadata.resource_version, patched.metadata.resource_version,
        "a no-op write is not a write"
    );

    let pods: Api<Pod> = Api::namespaced(api.client(), "ns1");
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(pod("ns1", "p", "10.0.0.1")).unwrap(),
    )
    .await
    .unwrap();
    let stored = api.get("pods", "ns1", "p").unwrap();
    assert!(
        stored["status"].is_null(),
        "status is the status subresource's to write"
    );

    services
        .delete("a", &DeleteParams::default())
        .await
        .unwrap();
    assert!(api.get("services", "default", "a").is_none());
    assert_eq!(
        api_error(
            &services
                .delete("a", &DeleteParams::default())
                .await
                .unwrap_err()
        )
        .0,
        404
    );
}

#[tokio::test]
async fn dynamic_objects_are_served_at_every_version_of_their_kind() {
    let api = KubeApi::start().await;
    api.apply_yaml(crate::testing::PRODUCTPAGE);
    let gvk = GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService");
    let vs: Api<DynamicObject> = Api::all_with(
        api.client(),
        &ApiResource::from_gvk_with_plural(&gvk, "virtualservices"),
    );
    let listed = vs.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    let item = &listed.items[0];
    assert_eq!(
        item.types.as_ref().unwrap().api_version,
        "networking.istio.io/v1"
    );
    assert_eq!(
        item.metadata.namespace.as_deref(),
        Some("default"),
        "applied without a namespace"
    );
    assert_eq!(item.data["spec"]["hosts"], json!(["productpage"]));
    let (ar, caps) = kube::discovery::pinned_kind(&api.client(), &gvk)
        .await
        .unwrap();
    assert_eq!(
        (ar.plural.as_str(), caps.scope),
        ("virtualservices", kube::discovery::Scope::Namespaced)
    );
}

#[tokio::test]
async fn a_watcher_lists_then_sees_added_modified_and_deleted() {
    let api = KubeApi::start().await;
    api.apply(service("a", json!({})));
    let services: Api<Service> = Api::all(api.client());
    let mut events = watcher(services, watcher::Config::default()).boxed();
    assert!(matches!(
        next(&mut events).await.unwrap(),
        watcher::Event::Init
    ));
    assert!(
        matches!(next(&mut events).await.unwrap(), watcher::Event::InitApply(s) if s.metadata.name.as_deref() == Some("a"))
    );
    assert!(matches!(
        next(&mut events).await.unwrap(),
        watcher::Event::InitDone
    ));

    // The watch starts on the next poll, from the list's resourceVersion, so these
    // are replayed to it whenever it connects.
    api.apply(service("b", json!({})));
    let mut changed = service("a", json!({}));
    changed["spec"]["clusterIP"] = "10.96.0.9".into();
    api.apply(changed);
    api.delete("services", "default", "b");
    let added = next(&mut events).await.unwrap();
    assert!(matches!(added, watcher::Event::Apply(s) if s.metadata.name.as_deref() == Some("b")));
    let modified = next(&mut events).await.unwrap();
    assert!(
        matches!(modified, watcher::Event::Apply(s) if s.spec.as_ref().unwrap().cluster_ip.as_deref() == Some("10.96.0.9"))
    );
    let deleted = next(&mut events).await.unwrap();
    assert!(
        matches!(deleted, watcher::Event::Delete(s) if s.metadata.name.as_deref() == Some("b"))
    );

    let watch = &api.requests_to(Verb::Watch, "services")[0];
    for param in [
        "watch=true",
        "allowWatchBookmarks=true",
        "timeoutSeconds=290",
        "resourceVersion=",
    ] {
        assert!(watch.query.contains(param), "{param} in {}", watch.query);
    }
    assert!(api.requests_to(Verb::List, "services")[0]
        .query
        .contains("limit=500"));
}

#[tokio::test]
async fn label_selectors_filter_on_the_server() {
    let api = KubeApi::start().await;
    api.apply_all([
        service("in", json!({"app": "a", "tier": "web"})),
        service("out", json!({"app": "b"})),
    ]);
    let services: Api<Service> = Api::all(api.client());
    let names = |list: kube::core::ObjectList<Service>| -> Vec<String> {
        list.items
            .into_iter()
            .filter_map(|s| s.metadata.name)
            .collect()
    };
    for (selector, want) in [
        ("app=a", vec!["in"]),
        ("app!=a", vec!["out"]),
        ("tier", vec!["in"]),
        ("!tier", vec!["out"]),
        ("app in (a,b),app notin (b)", vec!["in"]),
    ] {
        let listed = services
            .list(&ListParams::default().labels(selector))
            .await
            .unwrap();
        assert_eq!(names(listed), want, "{selector}");
    }
    let bad = services
        .list(&ListParams::default().labels("app in a"))
        .await
        .unwrap_err();
    assert_eq!(api_error(&bad), (400, "BadRequest".into()));

    let mirror = Mirror::start(services, watcher::Config::default().labels("app=a"));
    mirror.converges_to(&["in"]).await;
    api.wait_for_watchers("services", 1).await;
    api.apply(service("late", json!({"app": "a"})));
    api.apply(service("ignored", json!({"app": "c"})));
    mirror.converges_to(&["in", "late"]).await;
    // Leaving the selector reads as a deletion to this watch.
    api.apply(service("in", json!({"app": "c"})));
    mirror.converges_to(&["late"]).await;
    assert!(mirror.errors().is_empty(), "{:?}", mirror.errors());
}

#[tokio::test]
async fn lists_page_with_limit_and_continue() {
    let api = KubeApi::start().await;
    api.apply_all((0..1200).map(|i| pod(&format!("ns{}", i % 3), &format!("p{i:04}"), "10.0.0.1")));
    let pods: Api<Pod> = Api::all(api.client());
    let first = pods.list(&ListParams::default().limit(1000)).await.unwrap();
    assert_eq!(first.items.len(), 1000);
    let token = first.metadata.continue_.clone().unwrap();
    let rest = pods
        .list(&ListParams::default().limit(1000).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 200);
    assert_eq!(rest.metadata.continue_, None);
    assert_eq!(
        rest.metadata.resource_version,
        first.metadata.resource_version
    );

    let in_ns1: Api<Pod> = Api::namespaced(api.client(), "ns1");
    assert_eq!(
        in_ns1
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        400
    );

    // The watcher pages by 500.
    let pods_again = pods.clone();
    let mirror = Mirror::start(pods, watcher::Config::default());
    eventually("1200 pods", || mirror.store.len() == 1200).await;
    let lists = api.requests_to(Verb::List, "pods");
    assert_eq!(
        lists.len(),
        2 + 1 + 3,
        "two pages, one namespaced list, three watcher pages"
    );

    api.apply(pod("ns1", "later", "10.0.0.2"));
    api.compact();
    let stale = pods_again
        .list(&ListParams::default().continue_token(&token))
        .await
        .unwrap_err();
    assert_eq!(api_error(&stale), (410, "Expired".into()));
}

#[tokio::test]
async fn compaction_makes_the_watcher_list_again_and_converge() {
    let api = KubeApi::start().await;
    api.apply_all([service("a", json!({})), service("b", json!({}))]);
    let mirror = Mirror::start(
        Api::<Service>::all(api.client()),
        watcher::Config::default(),
    );
    mirror.converges_to(&["a", "b"]).await;
    api.wait_for_watchers("services", 1).await;

    // An open watch gets 410 and the watcher lists again.
    api.compact();
    eventually("a second list", || {
        api.requests_to(Verb::List, "services").len() == 2
    })
    .await;
    assert!(
        mirror
            .errors()
            .iter()
            .any(|e| e.contains("410") || e.contains("too old")),
        "{:?}",
        mirror.errors()
    );

    // Missed while away, then too old to replay: only a list can show the deletion.
    api.wait_for_watchers("services", 1).await;
    api.pause();
    api.delete("services", "default", "a");
    api.apply(service("c", json!({})));
    api.compact();
    api.resume();
    mirror.converges_to(&["b", "c"]).await;
    assert_eq!(api.requests_to(Verb::List, "services").len(), 3);
}

#[tokio::test]
async fn after_a_pause_the_watcher_resumes_and_loses_nothing() {
    let api = KubeApi::start().await;
    api.apply_all([service("a", json!({})), service("b", json!({}))]);
    let mirror = Mirror::start(
        Api::<Service>::all(api.client()),
        watcher::Config::default(),
    );
    mirror.converges_to(&["a", "b"]).await;
    api.wait_for_watchers("services", 1).await;

    api.pause();
    assert_eq!(api.watchers("services"), 0);
    api.delete("services", "default", "a");
    api.apply(service("c", json!({})));
    eventually("the watcher to notice", || !mirror.errors().is_empty()).await;
    let direct = Api::<Service>::all(api.client())
        .list(&ListParams::default())
        .await;
    assert!(direct.is_err(), "a paused server answers nothing");
    api.resume();

    mirror.converges_to(&["b", "c"]).await;
    assert_eq!(
        api.requests_to(Verb::List, "services").len(),
        1,
        "resumed without listing again"
    );
    assert!(
        api.requests_to(Verb::Watch, "services").len() >= 2,
        "the watch was resumed"
    );
}

#[tokio::test]
async fn a_missing_crd_is_a_404_until_installed() {
    let api = KubeApi::start().await;
    api.remove_crd("httproutes.gateway.networking.k8s.io");
    let routes = http_routes(api.client());
    assert_eq!(
        api_error(&routes.list(&ListParams::default()).await.unwrap_err()),
        (404, "NotFound".into())
    );
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    assert!(kube::discovery::pinned_kind(&api.client(), &gvk)
        .await
        .is_err());

    // Each attempt is an Init, then the failed list.
    let mut events = watcher(routes.clone(), watcher::Config::default()).boxed();
    assert!(matches!(
        next(&mut events).await.unwrap(),
        watcher::Event::Init
    ));
    match next(&mut events).await {
        Err(watcher::Error::InitialListFailed(e)) => assert_eq!(api_error(&e).0, 404),
        other => panic!("expected the initial list to fail, got {other:?}"),
    }
    api.install_crd("httproutes.gateway.networking.k8s.io");
    api.apply(http_route("r"));
    assert!(matches!(
        next(&mut events).await.unwrap(),
        watcher::Event::Init
    ));
    assert!(
        matches!(next(&mut events).await.unwrap(), watcher::Event::InitApply(r) if r.metadata.name.as_deref() == Some("r"))
    );
    assert!(kube::discovery::pinned_kind(&api.client(), &gvk)
        .await
        .is_ok());

    // Removing it again deletes its objects for the watcher, then its watches end.
    assert!(matches!(
        next(&mut events).await.unwrap(),
        watcher::Event::InitDone
    ));
    let remove = async {
        api.wait_for_watchers("httproutes", 1).await;
        api.remove_crd("httproutes");
    };
    let ((), deleted) = tokio::join!(remove, next(&mut events));
    assert!(
        matches!(deleted.unwrap(), watcher::Event::Delete(r) if r.metadata.name.as_deref() == Some("r"))
    );
    assert!(matches!(
        next(&mut events).await,
        Err(watcher::Error::WatchStartFailed(_))
    ));
}

#[tokio::test]
async fn status_is_written_by_merge_patch_and_server_side_apply() {
    let api = KubeApi::start().await;
    api.apply(http_route("r"));
    let routes = http_routes(api.client());
    let accepted = json!({"parents": [{"parentRef": {"name": "reviews", "kind": "Service", "group": ""},
        "controllerName": "istio.io/gateway-controller",
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
                        "lastTransitionTime": "2025-01-01T00:00:00Z", "observedGeneration": 1}]}]});
    let merged = routes
        .patch_status(
            "r",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": accepted, "spec": {"rules": []}})),
        )
        .await
        .unwrap();
    assert_eq!(merged.data["status"], accepted);
    assert_eq!(
        merged.data["spec"]["rules"].as_array().unwrap().len(),
        1,
        "a status write leaves spec alone"
    );
    assert_eq!(merged.metadata.generation, Some(1));

    let mut resolved = accepted.clone();
    resolved["parents"][0]["conditions"][0]["type"] = "ResolvedRefs".into();
    let applied = json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                         "metadata": {"name": "r", "namespace": "default"}, "status": resolved});
    let params = PatchParams::apply("waypoint").force();
    let after = routes
        .patch_status("r", &params, &Patch::Apply(&applied))
        .await
        .unwrap();
    assert_eq!(after.data["status"], resolved);
    let managers = after.metadata.managed_fields.unwrap();
    assert!(managers
        .iter()
        .any(|m| m.manager.as_deref() == Some("waypoint")
            && m.subresource.as_deref() == Some("status")));

    let patches = api.requests_to(Verb::Patch, "httproutes/status");
    assert_eq!(patches.len(), 2);
    assert_eq!(
        patches[0].content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(patches[1].body.as_ref().unwrap()["status"], resolved);
    assert_eq!(patches[1].field_manager.as_deref(), Some("waypoint"));
    assert!(
        api.requests_to(Verb::Patch, "httproutes").is_empty(),
        "only /status was patched"
    );

    // Writing the object leaves status as stored; apply creates what is missing.
    let mut spec_write = applied.clone();
    spec_write["status"] = json!({"parents": []});
    spec_write["metadata"]["name"] = "new".into();
    spec_write["spec"] = json!({"parentRefs": []});
    let created = routes
        .patch("new", &params, &Patch::Apply(&spec_write))
        .await
        .unwrap();
    assert!(created.data["status"].is_null());
    let missing = routes
        .patch_status("gone", &params, &Patch::Apply(&applied))
        .await
        .unwrap_err();
    assert_eq!(api_error(&missing).0, 404);
    let no_manager = routes
        .patch("new", &PatchParams::default(), &Patch::Apply(&spec_write))
        .await;
    assert!(no_manager.is_err());
}

#[tokio::test]
async fn leases_elect_a_leader_with_create_and_conditional_replace() {
    let api = KubeApi::start().await;
    let leases: Api<Lease> = Api::namespaced(api.client(), "istio-system");
    let lease = |holder: &str| -> Lease {
        serde_json::from_value(json!({"metadata": {"name": "waypoint-leader"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15}}))
        .unwrap()
    };
    let mine = leases
        .create(&PostParams::default(), &lease("a"))
        .await
        .unwrap();
    let theirs = leases
        .create(&PostParams::default(), &lease("b"))
        .await
        .unwrap_err();
    assert_eq!(api_error(&theirs), (409, "AlreadyExists".into()));

    let mut renewed = mine.clone();
    renewed.spec.as_mut().unwrap().lease_transitions = Some(1);
    let renewed = leases
        .replace("waypoint-leader", &PostParams::default(), &renewed)
        .await
        .unwrap();
    // Someone still holding the old version loses the race.
    let mut takeover = mine.clone();
    takeover.spec.as_mut().unwrap().holder_identity = Some("b".into());
    let lost = leases
        .replace("waypoint-leader", &PostParams::default(), &takeover)
        .await
        .unwrap_err();
    assert_eq!(api_error(&lost), (409, "Conflict".into()));
    let held = leases.get("waypoint-leader").await.unwrap();
    assert_eq!(held.spec.unwrap().holder_identity.as_deref(), Some("a"));
    assert_eq!(
        held.metadata.resource_version,
        renewed.metadata.resource_version
    );
}

#[tokio::test]
async fn events_are_recorded() {
    let api = KubeApi::start().await;
    let reporter = kube::runtime::events::Reporter {
        controller: "waypoint".into(),
        instance: Some("w-0".into()),
    };
    let recorder = kube::runtime::events::Recorder::new(api.client(), reporter);
    let reference = ObjectReference {
        api_version: Some("gateway.networking.k8s.io/v1".into()),
        kind: Some("HTTPRoute".into()),
        name: Some("r".into()),
        namespace: Some("default".into()),
        ..Default::default()
    };
    let event = kube::runtime::events::Event {
        type_: kube::runtime::events::EventType::Warning,
        reason: "InvalidBackend".into(),
        note: Some("no such service".into()),
        action: "Translate".into(),
        secondary: None,
    };
    recorder.publish(&event, &reference).await.unwrap();
    recorder.publish(&event, &reference).await.unwrap();
    let events = api.list("events.events.k8s.io");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["reason"], "InvalidBackend");
    assert_eq!(
        events[0]["series"]["count"], 2,
        "a repeat is a merge patch on the series"
    );
}

#[tokio::test]
async fn raw_watches_carry_bookmarks_and_streaming_lists_work() {
    let api = KubeApi::start().await;
    api.apply(service("a", json!({})));
    let services: Api<Service> = Api::default_namespaced(api.client());
    let from = api.resource_version().to_string();
    let mut events = services
        .watch(&WatchParams::default().timeout(5), &from)
        .await
        .unwrap()
        .boxed();
    api.wait_for_watchers("services", 1).await;
    api.bookmark();
    match next(&mut events).await.unwrap() {
        WatchEvent::Bookmark(b) => assert_eq!(b.metadata.resource_version, from),
        other => panic!("expected a bookmark, got {other:?}"),
    }
    api.apply(service("b", json!({})));
    assert!(
        matches!(next(&mut events).await.unwrap(), WatchEvent::Added(s) if s.metadata.name.as_deref() == Some("b"))
    );

    let mirror = Mirror::start(
        Api::<Service>::all(api.client()),
        watcher::Config::default().streaming_lists(),
    );
    mirror.converges_to(&["a", "b"]).await;
    assert!(
        api.requests_to(Verb::List, "services").is_empty(),
        "a streaming list is a watch"
    );
    assert!(api
        .requests_to(Verb::Watch, "services")
        .iter()
        .any(|w| w.query.contains("sendInitialEvents=true")));
}

#[tokio::test]
async fn bulk_loads_and_lists_at_benchmark_scale() {
    let api = KubeApi::start().await;
    let services =
        (0..10_000).map(|i| service(&format!("svc-{i}"), json!({"app": format!("app-{i}")})));
    let pods: Vec<Value> = (0..50_000)
        .map(|i| pod(&format!("ns-{}", i % 100), &format!("pod-{i}"), "10.0.0.1"))
        .collect();
    let started = Instant::now();
    api.apply_all(services);
    api.apply_all(pods);
    let loaded = started.elapsed();

    let started = Instant::now();
    let request = http::Request::get("/api/v1/pods").body(Vec::new()).unwrap();
    let text = api.client().request_text(request).await.unwrap();
    let listed = started.elapsed();
    assert_eq!(text.matches("\"kind\":\"Pod\"").count(), 50_000);
    eprintln!(
        "loaded 60,000 objects in {loaded:?}; listed 50,000 pods ({} MB) in {listed:?}",
        text.len() >> 20
    );
    // Generous for an unoptimized build on a shared machine; the bench build is ~10x faster.
    assert!(loaded < Duration::from_secs(10) && listed < Duration::from_secs(10));
}

#[tokio::test]
async fn watchers_see_a_bulk_load_as_events() {
    let api = KubeApi::start().await;
    let mirror = Mirror::start(Api::<Pod>::all(api.client()), watcher::Config::default());
    api.wait_for_watchers("pods", 1).await;
    api.apply_all((0..5_000).map(|i| pod("default", &format!("pod-{i}"), "10.0.0.1")));
    eventually("5000 pods", || mirror.store.len() == 5_000).await;
    assert!(mirror.errors().is_empty());
}
