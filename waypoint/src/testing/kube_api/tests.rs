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
use kube::core::PartialObjectMeta;
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

mod client;
mod watches;
mod writes;
