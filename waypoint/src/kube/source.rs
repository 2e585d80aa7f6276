//! The Kubernetes source's loop: applies what the watches deliver to the store,
//! waits a moment for more (changes come in bursts: a rollout, `kubectl apply`
//! of a directory), starts and stops the namespaced watches the new scope needs,
//! and once every watch has listed, translates what is served and swaps the
//! snapshot in. A resource that fails validation is rejected alone and
//! reported; the rest goes live. A change of endpoints alone (Pods,
//! EndpointSlices) translates only the Services it concerns.
//!
//! Endpoint changes go live as soon as they arrive (with whatever else is
//! queued by then). Other changes wait the debounce for the rest of their
//! burst (a `kubectl apply` of a directory, a route and the Service it sends
//! to), which is then built whole, once.

use super::endpoints::{Served, ServiceKey};
use super::kinds::Kind;
use super::scope::{scope, Filter, GatewayRef, Store, WatchId};
use super::watch::{Keep, Update, Watches};
use crate::state::State;
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use waypoint_config::Refresh;

/// Services labelled for some waypoint, cluster-wide: the API server filters,
/// so unlabelled Services elsewhere never reach the waypoint.
const LABELLED: &str = "istio.io/use-waypoint";
/// How long a new namespaced watch may take to list before the snapshot is
/// published without it (an API server that answers some calls and not others).
const LIST_PATIENCE: Duration = Duration::from_secs(10);

pub struct KubeSource {
    pub client: kube::Client,
    pub gateway: GatewayRef,
    pub options: waypoint_config::Options,
    pub state: Arc<State>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// How long a change other than of endpoints waits for the rest of its
    /// burst before the whole config is built.
    pub debounce: Duration,
    /// Where each rebuild's status goes, for the status writer.
    pub status: tokio::sync::watch::Sender<super::status::Desired>,
}

/// Kinds read cluster-wide: few objects each, whoever they serve.
const CLUSTER_WIDE: [Kind; 11] = [
    Kind::Namespace,
    Kind::ServiceEntry,
    Kind::WorkloadEntry,
    Kind::VirtualService,
    Kind::DestinationRule,
    Kind::HttpRoute,
    Kind::GrpcRoute,
    Kind::TcpRoute,
    Kind::BackendTrafficPolicy,
    Kind::AuthorizationPolicy,
    Kind::RequestAuthentication,
];

fn cluster(kind: Kind) -> WatchId {
    WatchId {
        kind,
        namespace: None,
    }
}

fn namespaced(kind: Kind, ns: &str) -> WatchId {
    WatchId {
        kind,
        namespace: Some(ns.to_string()),
    }
}

impl KubeSource {
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut watches = Watches::new(self.client.clone(), tx);
        for kind in CLUSTER_WIDE {
            watches.ensure(cluster(kind), None);
        }
        watches.ensure(cluster(Kind::Service), Some(LABELLED));
        watches.ensure(namespaced(Kind::Gateway, &self.gateway.namespace), None);
        // The mesh config, from the namespace the translation reads it from.
        watches.ensure(namespaced(Kind::ConfigMap, self.root()), None);
        let mut store = Store::default();
        let mut filters: BTreeMap<String, Filter> = BTreeMap::new();
        let mut namespaces: BTreeSet<String> = BTreeSet::new();
        let mut up = true;
        let mut published = false;
        // Changes not yet published (held back while a new watch lists).
        let mut dirty = false;
        let mut waiting_since: Option<Instant> = None;
        let mut impatient = false;
        let mut last_rejected: Vec<String> = Vec::new();
        // Services whose endpoints changed since the last build.
        let mut moved: BTreeSet<ServiceKey> = BTreeSet::new();
        let mut served_index = Served::default();
        loop {
            let first = tokio::select! {
                u = rx.recv() => u,
                _ = shutdown.changed() => return,
                _ = sleep_until(waiting_since.map(|t| t + LIST_PATIENCE)) => None,
            };
            if let Some((run, u)) = first {
                let mut pending = Pending {
                    store: &mut store,
                    filters: &filters,
                    namespaces: &namespaces,
                    served: &served_index,
                    up: &mut up,
                    dirty: &mut dirty,
                    moved: &mut moved,
                };
                if watches.current(run, u.watch()) {
                    self.apply(&mut pending, u);
                }
                // A change of endpoints alone goes live as soon as what is
                // queued is in. Anything else waits the debounce for the rest
                // of its burst: the Service a new route sends to may arrive
                // just after it, on another watch.
                let mut quiet: Option<Instant> = None;
                loop {
                    if *pending.dirty || !published {
                        quiet.get_or_insert_with(|| Instant::now() + self.debounce);
                    }
                    let u = match rx.try_recv() {
                        Ok(u) => Some(u),
                        Err(mpsc::error::TryRecvError::Disconnected) => return,
                        Err(mpsc::error::TryRecvError::Empty) => match quiet {
                            None => None,
                            Some(quiet) => tokio::select! {
                                u = rx.recv() => match u {
                                    Some(u) => Some(u),
                                    None => return,
                                },
                                _ = tokio::time::sleep_until(quiet) => None,
                            },
                        },
                    };
                    let Some((run, u)) = u else { break };
                    if watches.current(run, u.watch()) {
                        self.apply(&mut pending, u);
                    }
                }
            }
            if !dirty && !moved.is_empty() && published {
                let started = std::time::Instant::now();
                let moved = std::mem::take(&mut moved);
                match self.refresh(&store, &served_index, &moved) {
                    // No new generation: the next change need not wait.
                    Some(false) => continue,
                    Some(true) => {
                        self.metrics
                            .config_endpoint_update
                            .observe(started.elapsed().as_secs_f64());
                        continue;
                    }
                    None => dirty = true,
                }
            }
            // Nothing changed that a whole build would see (a Pod's status
            // heartbeat, a list page): no scope to compute again.
            if !dirty && published && waiting_since.is_none() {
                continue;
            }
            let started = std::time::Instant::now();
            let mut served = scope(&store, &self.gateway, self.root());
            let mut rewatched = self.rewatch(&mut watches, &mut store, &mut filters, &served);
            if served.namespaces != namespaces {
                // What was dropped as unwanted must be listed again now; what
                // is held stays until the new lists replace it.
                namespaces = served.namespaces.clone();
                for kind in CLUSTER_WIDE {
                    let id = cluster(kind);
                    watches.stop(&id);
                    watches.ensure(id, None);
                    store.relisting(&cluster(kind));
                }
                rewatched = true;
            }
            dirty |= rewatched;
            let listing = watches.ids().any(|id| !store.synced(id));
            if !listing {
                waiting_since = None;
                impatient = false;
            } else if !impatient {
                // The first snapshot waits for every watch (readiness means a
                // full sync); later ones wait a while for a new namespace's.
                if !published {
                    continue;
                }
                let since = *waiting_since.get_or_insert_with(Instant::now);
                if since.elapsed() < LIST_PATIENCE {
                    continue;
                }
                impatient = true;
                waiting_since = None;
            }
            if !dirty {
                continue;
            }
            dirty = false;
            if rewatched {
                served = scope(&store, &self.gateway, self.root());
            }
            self.publish(&served, &mut last_rejected, store.len());
            served_index = Served::new(&served);
            moved.clear();
            self.metrics
                .config_build
                .observe(started.elapsed().as_secs_f64());
            if !published {
                published = true;
                self.state.set_synced(true);
                log::info!(
                    "kubernetes: first sync done for gateway {}: {} objects served",
                    self.gateway,
                    served.objects.len()
                );
            }
        }
    }

    /// Istio's root namespace, as the translation takes it.
    fn root(&self) -> &str {
        &self.options.root_namespace
    }

    /// Translates what is served and swaps it in; logs rejections when they change.
    fn publish(&self, served: &super::scope::Scope, last_rejected: &mut Vec<String>, held: usize) {
        self.metrics.config_objects.set(held as i64);
        let loaded = waypoint_config::load_objects(&served.objects, &self.options);
        let conflicts: Vec<&waypoint_ir::RouteConflict> = loaded
            .snapshot
            .services
            .iter()
            .flat_map(|s| s.conflicts())
            .collect();
        let desired = super::status::desired(
            &served.objects,
            &loaded.rejected,
            &loaded.warnings,
            &conflicts,
            &served.services,
            &self.gateway,
        );
        self.status.send_if_modified(|d| {
            let changed = *d != desired;
            *d = desired;
            changed
        });
        let rejected: Vec<String> = loaded.rejected.iter().map(|d| d.to_string()).collect();
        if rejected != *last_rejected {
            for r in &rejected {
                log::error!("config rejected: {r}");
            }
            *last_rejected = rejected;
        }
        self.metrics.config_rejected.set(last_rejected.len() as i64);
        self.swap(loaded.snapshot);
    }

    /// Applies an endpoint change to the snapshot in use; `None` when it
    /// takes a whole build, else whether a new generation went live.
    fn refresh(
        &self,
        store: &Store,
        served: &Served,
        moved: &BTreeSet<ServiceKey>,
    ) -> Option<bool> {
        let objects = served.objects(store, moved);
        let current = self.state.current();
        let refreshed =
            waypoint_config::refresh_endpoints(&current.snapshot, objects, &self.options);
        drop(current);
        match refreshed {
            Refresh::Whole => None,
            Refresh::Unchanged => Some(false),
            Refresh::Changed(snapshot) => {
                self.metrics.config_objects.set(store.len() as i64);
                self.swap(*snapshot);
                Some(true)
            }
        }
    }

    fn swap(&self, snapshot: waypoint_ir::Snapshot) {
        let generation = self.state.replace(snapshot);
        self.metrics.config_reloads.with_label_values(&["ok"]).inc();
        self.metrics.config_generation.set(generation as i64);
        log::debug!("kubernetes: generation {generation}");
    }

    /// Applies one update to the store: a change of endpoints alone adds the
    /// Services it concerns to `moved`, any other change sets `dirty`. Pods
    /// and EndpointSlices no served Service needs are not held (one that stops
    /// being needed is dropped).
    fn apply(&self, p: &mut Pending<'_>, update: Update) {
        let healthy = !matches!(update, Update::Failed(..));
        if healthy && !*p.up {
            *p.up = true;
            self.metrics.config_source_up.set(1);
            log::info!("kubernetes: the API server answers again");
        }
        match update {
            Update::Listing(id, answer) => {
                // The watch drops on arrival what this refuses, for its whole
                // run (a changed filter restarts it), so what arrives is kept.
                let keep = Keep::new(&id, p.filters, p.namespaces, &self.gateway, self.root());
                let _ = answer.send(keep.into_owned());
                p.store.listing(&id);
            }
            Update::Listed(id, o) => p.store.listed(&id, o),
            Update::ListDone(id) => {
                p.store.list_done(&id);
                *p.dirty = true;
            }
            Update::Applied(id, o) => {
                p.changed(&id, &o, Some(&o));
                p.store.apply(&id, o);
            }
            Update::Dropped(id, o) | Update::Deleted(id, o) => {
                p.changed(&id, &o, None);
                p.store.delete(&id, &o);
            }
            Update::Absent(id) => {
                let was = p.store.synced(&id);
                p.store.absent(&id);
                *p.dirty |= !was;
            }
            Update::Failed(id, why) => {
                if *p.up {
                    *p.up = false;
                    self.metrics.config_source_up.set(0);
                    log::warn!(
                        "kubernetes: watching {} failed ({why}); serving generation {} until the API server answers",
                        id.kind.name(),
                        self.state.current().generation
                    );
                }
            }
        }
    }

    /// Starts the namespaced watches the scope needs and stops the others,
    /// forgetting what they held; a namespace whose filter changed has its
    /// Pod and EndpointSlice watches started again, to list what the old
    /// filter dropped. True if any watch started or stopped.
    fn rewatch(
        &self,
        watches: &mut Watches,
        store: &mut Store,
        filters: &mut BTreeMap<String, Filter>,
        served: &super::scope::Scope,
    ) -> bool {
        let mut changed = false;
        // What a restarted watch held stays until its new list replaces it, so
        // a changed filter never leaves a Service without endpoints meanwhile.
        for (ns, filter) in &served.endpoint_namespaces {
            if filters.get(ns) != Some(filter) {
                for kind in [Kind::Pod, Kind::EndpointSlice] {
                    changed |= watches.stop(&namespaced(kind, ns));
                    store.relisting(&namespaced(kind, ns));
                }
                filters.insert(ns.clone(), filter.clone());
            }
        }
        let gone: Vec<String> = filters
            .keys()
            .filter(|ns| !served.endpoint_namespaces.contains_key(*ns))
            .cloned()
            .collect();
        for ns in gone {
            for kind in [Kind::Pod, Kind::EndpointSlice] {
                let id = namespaced(kind, &ns);
                changed |= watches.stop(&id);
                store.forget(&id);
            }
            filters.remove(&ns);
        }
        let mut wanted: BTreeSet<WatchId> = BTreeSet::new();
        for ns in served
            .service_namespaces
            .iter()
            .chain(&served.authorizer_namespaces)
        {
            wanted.insert(namespaced(Kind::Service, ns));
        }
        for ns in filters.keys() {
            wanted.insert(namespaced(Kind::Pod, ns));
            wanted.insert(namespaced(Kind::EndpointSlice, ns));
        }
        let stale: Vec<WatchId> = watches
            .ids()
            .filter(|id| id.kind == Kind::Service && id.namespace.is_some() && !wanted.contains(id))
            .cloned()
            .collect();
        for id in stale {
            changed |= watches.stop(&id);
            store.forget(&id);
        }
        for id in wanted {
            changed |= watches.ensure(id, None);
        }
        changed
    }
}

/// What one batch of updates changes: the store, and what must be built again.
struct Pending<'a> {
    store: &'a mut Store,
    filters: &'a BTreeMap<String, Filter>,
    namespaces: &'a BTreeSet<String>,
    served: &'a Served,
    up: &'a mut bool,
    /// A whole build is needed.
    dirty: &'a mut bool,
    /// Served Services whose endpoints changed.
    moved: &'a mut BTreeSet<ServiceKey>,
}

impl Pending<'_> {
    /// Notes that `object` of watch `id` becomes `now` (`None`: no longer held),
    /// before the store takes it. Nothing changes if it was not held and is not
    /// now, or is held as it was (a Pod's other fields changed).
    fn changed(
        &mut self,
        id: &WatchId,
        object: &serde_json::Value,
        now: Option<&serde_json::Value>,
    ) {
        let was = self.store.held(id, object);
        if was == now {
            return;
        }
        match (&id.namespace, id.kind) {
            (Some(ns), Kind::Pod | Kind::EndpointSlice) => {
                self.served.concerned(id.kind, ns, [was, now], self.moved)
            }
            _ => *self.dirty = true,
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
