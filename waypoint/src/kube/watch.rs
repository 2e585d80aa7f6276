//! One task per watch: kube-runtime's watcher (list, then watch from the list's
//! resourceVersion, re-list on 410 Gone) over `Api<DynamicObject>`, its objects
//! trimmed, those its [`Keep`] refuses dropped, and the rest sent to the source
//! loop. The store applies them there, on one task, so no lock is held while
//! objects arrive.

mod keep;
#[cfg(test)]
mod tests;

pub use keep::Keep;

use super::kinds::Kind;
use super::scope::WatchId;
use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// What a watch saw, in its order.
#[derive(Debug)]
pub enum Update {
    /// A (re)list begins. The source loop answers with what the watch keeps of
    /// it and of the changes after it; the watch waits for the answer.
    Listing(WatchId, oneshot::Sender<Keep<'static>>),
    Listed(WatchId, Value),
    ListDone(WatchId),
    Applied(WatchId, Value),
    /// A change to an object the watch does not keep: if it was held (it no
    /// longer matches), it goes.
    Dropped(WatchId, Value),
    Deleted(WatchId, Value),
    /// The kind is not served (its CRD is not installed); tried again later.
    Absent(WatchId),
    /// The API server could not be reached or refused the watch; retried.
    Failed(WatchId, String),
}

impl Update {
    pub fn watch(&self) -> &WatchId {
        match self {
            Update::Listing(id, _)
            | Update::Listed(id, _)
            | Update::ListDone(id)
            | Update::Applied(id, _)
            | Update::Dropped(id, _)
            | Update::Deleted(id, _)
            | Update::Absent(id)
            | Update::Failed(id, _) => id,
        }
    }
}

/// Retries after a failure: soon at first, then at most every 5 s, so a
/// restarted API server is seen again quickly (kube's default waits up to 30 s).
struct Retry(Duration);

impl Iterator for Retry {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        let now = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
        Some(now)
    }
}

impl Backoff for Retry {
    fn reset(&mut self) {
        self.0 = Duration::from_millis(200);
    }
}

/// An update with the run of the watch that sent it: a watch stopped and
/// started again may still have updates of its old run queued, which must not
/// mix with the new run's list.
pub type Tagged = (u64, Update);

/// The running watches, started and stopped as the scope changes.
pub struct Watches {
    client: kube::Client,
    tx: UnboundedSender<Tagged>,
    running: HashMap<WatchId, (u64, JoinHandle<()>)>,
    runs: u64,
}

impl Watches {
    pub fn new(client: kube::Client, tx: UnboundedSender<Tagged>) -> Self {
        Watches {
            client,
            tx,
            running: HashMap::new(),
            runs: 0,
        }
    }

    /// Whether an update comes from the current run of its watch.
    pub fn current(&self, run: u64, id: &WatchId) -> bool {
        self.running.get(id).is_some_and(|(r, _)| *r == run)
    }

    /// Starts `id` unless it runs; `labels` is a label selector for the API
    /// server (the kind adds its own field selector, [`Kind::field_selector`]).
    pub fn ensure(&mut self, id: WatchId, labels: Option<&'static str>) -> bool {
        if self.running.contains_key(&id) {
            return false;
        }
        debug_assert!(
            id.kind != Kind::ConfigMap || id.namespace.is_some(),
            "ConfigMaps are read in the root namespace only, never cluster-wide"
        );
        self.runs += 1;
        let task = tokio::spawn(run(
            self.client.clone(),
            id.clone(),
            labels,
            (self.runs, self.tx.clone()),
        ));
        self.running.insert(id, (self.runs, task));
        true
    }

    /// Stops `id`; true if it ran.
    pub fn stop(&mut self, id: &WatchId) -> bool {
        match self.running.remove(id) {
            Some((_, task)) => {
                task.abort();
                true
            }
            None => false,
        }
    }

    pub fn ids(&self) -> impl Iterator<Item = &WatchId> {
        self.running.keys()
    }
}

impl Drop for Watches {
    fn drop(&mut self) {
        for (_, task) in self.running.values() {
            task.abort();
        }
    }
}

/// Kinds logged as not served. A watch restarts whenever its scope changes,
/// so the log line is kept to once per process until the kind appears.
static LOGGED_ABSENT: std::sync::Mutex<Vec<Kind>> = std::sync::Mutex::new(Vec::new());

/// Records whether `kind` is served; true when that is news worth a log line.
fn absent_news(kind: Kind, absent: bool) -> bool {
    let mut logged = LOGGED_ABSENT.lock().unwrap_or_else(|e| e.into_inner());
    let known = logged.contains(&kind);
    match (absent, known) {
        (true, false) => logged.push(kind),
        (false, true) => logged.retain(|k| *k != kind),
        _ => return false,
    }
    true
}

fn not_served(e: &watcher::Error) -> bool {
    let api = match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s)) => s,
        _ => return false,
    };
    api.code == 404
}

async fn run(
    client: kube::Client,
    id: WatchId,
    labels: Option<&'static str>,
    (run, tx): (u64, UnboundedSender<Tagged>),
) {
    let kind: Kind = id.kind;
    let versions = kind.versions();
    let mut config = watcher::Config::default();
    if let Some(l) = labels {
        config = config.labels(l);
    }
    if let Some(f) = kind.field_selector() {
        config = config.fields(&f);
    }
    let mut version = 0;
    let mut retry = Retry(Duration::from_millis(200));
    // Each pass reads one version; a kind served at none of its versions is
    // absent, and its versions are tried again after a back-off.
    loop {
        let served_at = versions[version];
        let resource = kind.api_resource_at(served_at);
        let api: Api<DynamicObject> = match &id.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
            None => Api::all_with(client.clone(), &resource),
        };
        let trimmed = |o: DynamicObject| {
            kind.trim_at(&serde_json::to_value(o).unwrap_or_default(), served_at)
        };
        let mut events = std::pin::pin!(
            watcher::watcher(api, config.clone()).backoff(Retry(Duration::from_millis(200)))
        );
        // Set by the source loop's answer to `Listing`, which always comes first.
        let mut keep = Keep::All;
        let mut next_version = false;
        while let Some(event) = events.next().await {
            let update = match event {
                Ok(Event::Init) => {
                    let (answer, keeps) = oneshot::channel();
                    if tx.send((run, Update::Listing(id.clone(), answer))).is_err() {
                        return;
                    }
                    // No answer: the source loop has moved on from this run.
                    let Ok(k) = keeps.await else { return };
                    keep = k;
                    continue;
                }
                Ok(Event::InitApply(o)) => {
                    let o = trimmed(o);
                    if !keep.keeps(&o) {
                        continue;
                    }
                    Update::Listed(id.clone(), o)
                }
                Ok(Event::InitDone) => {
                    if absent_news(kind, false) {
                        log::info!("{}: now served ({served_at}); reading it", kind.name());
                    }
                    retry.reset();
                    Update::ListDone(id.clone())
                }
                Ok(Event::Apply(o)) => {
                    let o = trimmed(o);
                    if keep.keeps(&o) {
                        Update::Applied(id.clone(), o)
                    } else {
                        Update::Dropped(id.clone(), o)
                    }
                }
                Ok(Event::Delete(o)) => Update::Deleted(id.clone(), trimmed(o)),
                Err(e) if kind.is_custom() && not_served(&e) => {
                    if version + 1 < versions.len() {
                        // Try the next version before calling the kind absent.
                        next_version = true;
                        break;
                    }
                    if absent_news(kind, true) {
                        log::info!(
                            "{}: not served by the API server (CRD not installed); skipped until it is",
                            kind.name()
                        );
                    }
                    if versions.len() > 1 {
                        // Every version was refused: start again from the preferred one.
                        if tx.send((run, Update::Absent(id.clone()))).is_err() {
                            return;
                        }
                        break;
                    }
                    Update::Absent(id.clone())
                }
                Err(e) => Update::Failed(id.clone(), e.to_string()),
            };
            if tx.send((run, update)).is_err() {
                return;
            }
        }
        if next_version {
            version += 1;
        } else {
            version = 0;
            let wait = retry.next().unwrap_or(Duration::from_secs(5));
            tokio::time::sleep(wait).await;
        }
    }
}
