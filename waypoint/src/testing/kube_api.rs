//! A fake kube-apiserver for tests and benchmarks: plain HTTP/1.1 on loopback,
//! objects in memory, speaking the API's wire protocol for what `kube::Client` and
//! `kube::runtime::watcher` send: list (paged), watch (JSON lines, bookmarks, 410
//! Expired), get, create, replace, merge patch, server-side apply, `/status`,
//! delete, label and field selectors, and discovery.
//!
//! The test drives the world directly ([`KubeApi::apply`], [`KubeApi::delete`],
//! [`KubeApi::compact`], [`KubeApi::pause`], [`KubeApi::remove_crd`]) and checks what
//! clients did ([`KubeApi::requests_to`], [`KubeApi::wait_for_watchers`]).
//!
//! ```no_run
//! # async fn demo() {
//! use waypoint::testing::kube_api::{KubeApi, Verb};
//! let api = KubeApi::start().await;
//! api.apply_yaml(waypoint::testing::PRODUCTPAGE);
//! let dir = tempfile::tempdir().unwrap();
//! let kubeconfig = api.kubeconfig(dir.path()); // for `waypoint --kubeconfig`
//! api.wait_for_watchers("services", 1).await;
//! assert_eq!(api.requests_to(Verb::Patch, "httproutes/status").len(), 0);
//! # }
//! ```

mod body;
mod discovery;
mod handler;
mod patch;
mod requests;
mod resources;
mod route;
mod selector;
mod server;
mod status;
mod store;
mod watch;

#[cfg(test)]
mod tests;

pub use requests::{Request, Verb};
pub use resources::ResourceType;

use serde::Deserialize;
use serde_json::Value;
use server::Gate;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use store::{Mode, Obj, Part, ResId, Store, Write};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use watch::{End, Watches};

/// How long [`KubeApi::wait_for_watchers`] waits before failing the test.
const WAIT: Duration = Duration::from_secs(10);

/// A running fake API server. Dropping it stops it and closes its connections.
pub struct KubeApi {
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

pub(crate) struct Shared {
    state: Mutex<State>,
    /// Bumped after anything a watch may act on: writes, ends, bookmark requests,
    /// watches opening and closing.
    changed: tokio::sync::watch::Sender<u64>,
    gate: tokio::sync::watch::Sender<Gate>,
    requests: Mutex<Vec<Request>>,
    addr: SocketAddr,
}

pub(crate) struct State {
    store: Store,
    watches: Watches,
    bookmark_interval: Duration,
}

impl Shared {
    /// A panicking test thread must not take every later request down with it.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl KubeApi {
    /// Listens on an ephemeral port on 127.0.0.1, with every built-in kind installed.
    pub async fn start() -> KubeApi {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a loopback port");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let state = State {
            store: Store::new(),
            watches: Watches::default(),
            bookmark_interval: Duration::from_secs(1),
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            changed: tokio::sync::watch::Sender::new(0),
            gate: tokio::sync::watch::Sender::new(Gate::Serving),
            requests: Mutex::new(Vec::new()),
            addr,
        });
        let server = tokio::spawn(server::serve(listener, shared.clone()));
        KubeApi { shared, server }
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `http://127.0.0.1:{port}`
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// A client for this server (default namespace `default`). Needs a tokio runtime.
    pub fn client(&self) -> kube::Client {
        let url = self.url().parse().expect("a valid URL");
        kube::Client::try_from(kube::Config::new(url)).expect("a client for a plain-HTTP server")
    }

    /// Writes `dir/kubeconfig` pointing at this server (no credentials, namespace
    /// `default`) and returns its path, for `--kubeconfig` or `KUBECONFIG`.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let config = format!(
            "apiVersion: v1\nkind: Config\n\
             clusters:\n- name: fake\n  cluster:\n    server: {}\n\
             users:\n- name: fake\n  user: {{}}\n\
             contexts:\n- name: fake\n  context: {{cluster: fake, user: fake, namespace: default}}\n\
             current-context: fake\n",
            self.url()
        );
        std::fs::write(&path, config).expect("writing the kubeconfig");
        path
    }

    /// Creates or replaces an object, as the test's own unchecked write: no
    /// preconditions, `status` written as given (left out, the stored status stays,
    /// as with `kubectl apply` next to a controller; `null` removes it). It gets a
    /// new resourceVersion, and watchers an ADDED or MODIFIED event, unless nothing
    /// changed. A namespaced object without a namespace goes to `default`. Returns
    /// the stored object.
    ///
    /// # Panics
    /// If the object has no `metadata.name`, or its `apiVersion`/`kind` is not a
    /// registered, installed kind.
    pub fn apply(&self, object: Value) -> Value {
        let mut st = self.shared.lock();
        let (id, obj) = apply_one(&mut st.store, object);
        let stored = present(&st.store.resource(id).ty, &obj);
        drop(st);
        self.shared.notify();
        stored
    }

    /// [`apply`](Self::apply) for many objects under one lock, with one wake-up for
    /// the watchers: the way to load thousands of objects.
    pub fn apply_all(&self, objects: impl IntoIterator<Item = Value>) {
        let mut st = self.shared.lock();
        for object in objects {
            apply_one(&mut st.store, object);
        }
        drop(st);
        self.shared.notify();
    }

    /// [`apply_all`](Self::apply_all) for a multi-document YAML stream.
    pub fn apply_yaml(&self, yaml: &str) {
        let documents = serde_yaml_ng::Deserializer::from_str(yaml)
            .map(|doc| Value::deserialize(doc).expect("valid YAML"));
        let objects: Vec<Value> = documents.filter(|v| !v.is_null()).collect();
        self.apply_all(objects);
    }

    /// The stored object, with `apiVersion` at the kind's first version. `resource`
    /// is `plural`, `plural.group`, or a plural only one group uses; `namespace` is
    /// ignored for cluster-scoped kinds.
    pub fn get(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let st = self.shared.lock();
        let id = find(&st.store, resource);
        let ty = &st.store.resource(id).ty;
        let namespace = if ty.namespaced { namespace } else { "" };
        st.store
            .get(id, namespace, name)
            .map(|obj| present(ty, obj))
    }

    /// Every stored object of a kind, in namespace/name order.
    pub fn list(&self, resource: &str) -> Vec<Value> {
        let st = self.shared.lock();
        let id = find(&st.store, resource);
        let ty = &st.store.resource(id).ty;
        st.store
            .scan(id, None, None)
            .map(|obj| present(ty, obj))
            .collect()
    }

    /// Deletes an object (watchers see DELETED); false if there was none.
    pub fn delete(&self, resource: &str, namespace: &str, name: &str) -> bool {
        let mut st = self.shared.lock();
        let id = find(&st.store, resource);
        let namespace = if st.store.resource(id).ty.namespaced {
            namespace
        } else {
            ""
        };
        let deleted = st
            .store
            .delete(id, namespace, name, &Default::default())
            .is_ok();
        drop(st);
        self.shared.notify();
        deleted
    }

    /// The resourceVersion of the last write.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().store.rv()
    }

    /// Forgets all history, as etcd compaction plus a watch cache reset do: every
    /// open watch gets an ERROR event with a 410 Expired Status and ends, and
    /// resuming a watch or a paged list from an older resourceVersion gets 410, so
    /// kube's watcher lists again.
    pub fn compact(&self) {
        let mut st = self.shared.lock();
        st.store.compact();
        st.watches.end(None, End::Expired);
        drop(st);
        self.shared.notify();
    }

    /// Sends every open watch that allowed bookmarks a BOOKMARK at the current
    /// resourceVersion, once it has caught up.
    pub fn bookmark(&self) {
        self.shared.lock().watches.bookmark();
        self.shared.notify();
    }

    /// How often open watches get a BOOKMARK unasked (default 1 s); applies from
    /// each watch's next bookmark on.
    pub fn set_bookmark_interval(&self, every: Duration) {
        self.shared.lock().bookmark_interval = every;
    }

    /// Adds a kind (installed), or redefines one of the same `plural.group`.
    pub fn register(&self, ty: ResourceType) {
        self.shared.lock().store.register(ty);
    }

    /// Takes a kind away like deleting its CRD: its objects are deleted (watchers
    /// see DELETED), its watches end, and its paths answer 404 with a NotFound
    /// Status until [`install_crd`](Self::install_crd). `name` as for [`get`](Self::get).
    pub fn remove_crd(&self, name: &str) {
        let mut st = self.shared.lock();
        let id = find(&st.store, name);
        st.store.uninstall(id);
        st.watches.end(Some(id), End::Closed);
        drop(st);
        self.shared.notify();
    }

    pub fn install_crd(&self, name: &str) {
        let mut st = self.shared.lock();
        let id = find(&st.store, name);
        st.store.install(id);
    }

    /// The server goes away: open connections (watches included) are closed and new
    /// ones are closed as soon as they are accepted, until [`resume`](Self::resume).
    /// Test-side writes keep working, so a test can change the world meanwhile.
    pub fn pause(&self) {
        self.shared.gate.send_replace(Gate::Paused);
        self.shared.lock().watches.end(None, End::Closed);
        self.shared.notify();
    }

    pub fn resume(&self) {
        self.shared.gate.send_replace(Gate::Serving);
    }

    /// Open watches on a kind.
    pub fn watchers(&self, resource: &str) -> usize {
        let st = self.shared.lock();
        let id = find(&st.store, resource);
        st.watches.count(Some(id))
    }

    /// Waits until at least `n` watches on `resource` are open.
    ///
    /// # Panics
    /// After 10 s, saying how many there are.
    pub async fn wait_for_watchers(&self, resource: &str, n: usize) {
        let mut changed = self.shared.changed.subscribe();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let open = self.watchers(resource);
            if open >= n {
                return;
            }
            if tokio::time::timeout_at(deadline, changed.changed())
                .await
                .is_err()
            {
                panic!("{open} watches on {resource} after {WAIT:?}, wanted {n}");
            }
        }
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Requests that are `verb` on `target` (see [`Request::is`]), e.g.
    /// `requests_to(Verb::Patch, "httproutes/status")`.
    pub fn requests_to(&self, verb: Verb, target: &str) -> Vec<Request> {
        let requests = self
            .shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        requests
            .iter()
            .filter(|r| r.is(verb, target))
            .cloned()
            .collect()
    }

    pub fn clear_requests(&self) {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        self.shared.gate.send_replace(Gate::Stopped);
        self.server.abort();
    }
}

fn find(store: &Store, resource: &str) -> ResId {
    store.find(resource).unwrap_or_else(|e| panic!("{e}"))
}

fn apply_one(store: &mut Store, object: Value) -> (ResId, Arc<Obj>) {
    let api_version = object["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let kind = object["kind"].as_str().unwrap_or_default().to_string();
    let id = store
        .by_kind(&api_version, &kind)
        .unwrap_or_else(|| panic!("no kind {kind:?} in {api_version:?} is registered"));
    let ty = &store.resource(id).ty;
    assert!(
        store.resource(id).installed,
        "{} is not installed: call install_crd first",
        ty.name()
    );
    let meta = &object["metadata"];
    let name = meta["name"]
        .as_str()
        .unwrap_or_else(|| panic!("a {kind} without metadata.name"))
        .to_string();
    let namespace = match ty.namespaced {
        true => meta["namespace"].as_str().unwrap_or("default").to_string(),
        false => String::new(),
    };
    let write = Write {
        part: Part::All,
        mode: Mode::Upsert,
        apply: None,
    };
    match store.write(id, &namespace, &name, &write, |_| Ok(object)) {
        Ok((obj, _)) => (id, obj),
        Err(e) => panic!("applying {kind} {namespace}/{name}: {}", e.to_value()),
    }
}

/// The object as a client of the kind's first version sees it.
fn present(ty: &ResourceType, obj: &Obj) -> Value {
    let bytes = body::View::new(ty, &ty.versions[0], None).object(obj);
    serde_json::from_slice(&bytes).expect("stored objects are JSON")
}
