//! Watch streams. Each open watch is a task that reads its kind's change log from
//! its own cursor and writes JSON lines into the response body; writers never
//! queue per watcher, they bump `Shared::changed`, so a burst of 60,000 writes
//! costs a watcher one wake-up and a few large chunks, and nothing is lost to a
//! slow reader.
//!
//! A watch ends when its client goes, its `timeoutSeconds` pass, the server pauses
//! (closed), the kind is uninstalled (closed after its DELETED events), or history
//! is compacted (an ERROR event with a 410 Expired Status, as the API server sends
//! when a watch falls out of its window).

use super::body::{self, Body, View};
use super::selector::Filter;
use super::status::ApiError;
use super::store::{Change, Entry, Obj, ResId};
use super::{Shared, State};
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Events per chunk and log entries looked at per lock hold.
const BATCH: usize = 1000;
const SCAN: usize = 20_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    Closed,
    Expired,
}

struct Registration {
    res: ResId,
    end: Option<End>,
    bookmark: bool,
}

/// The open watches, so tests can count them and the server can end them.
#[derive(Default)]
pub(crate) struct Watches {
    next: u64,
    open: HashMap<u64, Registration>,
}

impl Watches {
    fn add(&mut self, res: ResId) -> u64 {
        self.next += 1;
        self.open.insert(
            self.next,
            Registration {
                res,
                end: None,
                bookmark: false,
            },
        );
        self.next
    }

    /// Watches still serving `res` (any kind if `None`).
    pub(crate) fn count(&self, res: Option<ResId>) -> usize {
        let serving = |r: &&Registration| r.end.is_none() && res.is_none_or(|res| r.res == res);
        self.open.values().filter(serving).count()
    }

    pub(crate) fn end(&mut self, res: Option<ResId>, end: End) {
        for r in self.open.values_mut() {
            if r.end.is_none() && res.is_none_or(|res| r.res == res) {
                r.end = Some(end);
            }
        }
    }

    pub(crate) fn bookmark(&mut self) {
        for r in self.open.values_mut() {
            r.bookmark = true;
        }
    }
}

pub(crate) enum Start {
    /// `resourceVersion` unset or "0": changes from now, after the current objects
    /// as ADDED events (unless `sendInitialEvents=false`); `mark_end` ends those with
    /// the annotated bookmark a streaming list waits for.
    Current { objects: bool, mark_end: bool },
    /// Changes after this resourceVersion.
    After(u64),
}

pub(crate) struct WatchRequest {
    pub(crate) res: ResId,
    pub(crate) view: View,
    pub(crate) filter: Filter,
    pub(crate) start: Start,
    pub(crate) bookmarks: bool,
    pub(crate) timeout: Duration,
}

/// Registers the watch now, so it is counted before the response goes out, and
/// streams it from a task.
pub(crate) fn start(shared: &Arc<Shared>, req: WatchRequest) -> Body {
    let (tx, rx) = mpsc::channel(4);
    let id = shared.lock().watches.add(req.res);
    shared.notify();
    tokio::spawn(run(
        Registered {
            shared: shared.clone(),
            id,
        },
        req,
        tx,
    ));
    Body::Watch(rx)
}

/// Removes the registration however the task ends.
struct Registered {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.shared.lock().watches.open.remove(&self.id);
        self.shared.notify();
    }
}

enum Step {
    /// Progress through the log; possibly nothing this watch wants.
    Events(Vec<(&'static str, Arc<Obj>)>),
    Bookmark(u64),
    Idle,
    End(End),
}

async fn run(reg: Registered, req: WatchRequest, tx: mpsc::Sender<Bytes>) {
    let shared = &reg.shared;
    let mut changed = shared.changed.subscribe();
    let deadline = Instant::now() + req.timeout;
    let (mut cursor, initial, expired) = {
        let st = shared.lock();
        let (rv, compacted) = (st.store.rv(), st.store.compacted());
        match req.start {
            Start::After(from) if from < compacted => (from, Vec::new(), Some(compacted)),
            Start::After(from) => (from, Vec::new(), None),
            Start::Current { objects: false, .. } => (rv, Vec::new(), None),
            Start::Current { objects: true, .. } => {
                let ns = req.filter.namespace.as_deref();
                let objs = st
                    .store
                    .scan(req.res, ns, None)
                    .filter(|o| req.filter.matches(o));
                (rv, objs.cloned().collect(), None)
            }
        }
    };
    if let Some(compacted) = expired {
        let error = ApiError::expired(format!("too old resource version: {cursor} ({compacted})"));
        let _ = tx.send(body::error_event(&error)).await;
        return;
    }
    for batch in initial.chunks(BATCH) {
        let batch = batch.iter().map(|o| ("ADDED", o.clone())).collect();
        if tx.send(render(&req.view, batch)).await.is_err() {
            return;
        }
    }
    if let Start::Current { mark_end: true, .. } = req.start {
        if tx.send(req.view.bookmark(cursor, true)).await.is_err() {
            return;
        }
    }
    let mut next_bookmark = Instant::now() + shared.lock().bookmark_interval;
    let mut bookmark_due = false;
    loop {
        let step = step(&mut shared.lock(), reg.id, &req, &mut cursor, bookmark_due);
        let (chunk, last) = match step {
            Step::Events(batch) if batch.is_empty() => continue,
            Step::Events(batch) => (render(&req.view, batch), false),
            Step::Bookmark(rv) => {
                bookmark_due = false;
                next_bookmark = Instant::now() + shared.lock().bookmark_interval;
                (req.view.bookmark(rv, false), false)
            }
            Step::End(End::Closed) => return,
            Step::End(End::Expired) => {
                let error =
                    ApiError::expired("The resourceVersion for the provided watch is too old.");
                (body::error_event(&error), true)
            }
            Step::Idle => {
                tokio::select! {
                    _ = changed.changed() => {}
                    _ = tokio::time::sleep_until(next_bookmark), if req.bookmarks => bookmark_due = true,
                    _ = tokio::time::sleep_until(deadline) => return,
                    _ = tx.closed() => return,
                }
                continue;
            }
        };
        if tx.send(chunk).await.is_err() || last {
            return;
        }
    }
}

/// Under the lock: the next events for this watch, else a bookmark if one is due,
/// else whether it has ended. Pending events go out before an end, so a watch on
/// an uninstalled kind sees its objects' DELETED events first.
fn step(st: &mut State, id: u64, req: &WatchRequest, cursor: &mut u64, bookmark_due: bool) -> Step {
    let Some(reg) = st.watches.open.get_mut(&id) else {
        return Step::End(End::Closed);
    };
    let log = &st.store.resource(req.res).log;
    let from = log.partition_point(|e| e.rv <= *cursor);
    let pending = &log[from..(from + SCAN).min(log.len())];
    if !pending.is_empty() && reg.end != Some(End::Expired) {
        let mut batch = Vec::new();
        for entry in pending {
            *cursor = entry.rv;
            if let Some(kind) = seen_as(entry, &req.filter) {
                batch.push((kind, entry.obj.clone()));
                if batch.len() == BATCH {
                    break;
                }
            }
        }
        return Step::Events(batch);
    }
    if let Some(end) = reg.end {
        return Step::End(end);
    }
    if (std::mem::take(&mut reg.bookmark) && req.bookmarks) || bookmark_due {
        *cursor = st.store.rv();
        return Step::Bookmark(*cursor);
    }
    Step::Idle
}

/// How a change looks through a filter: an object that starts or stops matching is
/// ADDED or DELETED for this watch.
fn seen_as(entry: &Entry, filter: &Filter) -> Option<&'static str> {
    let now = filter.matches(&entry.obj);
    let before = entry.prev.as_ref().is_some_and(|p| filter.matches(p));
    match (entry.change, before, now) {
        (Change::Added, _, true) => Some("ADDED"),
        (Change::Modified, true, true) => Some("MODIFIED"),
        (Change::Modified, false, true) => Some("ADDED"),
        (Change::Modified, true, false) => Some("DELETED"),
        (Change::Deleted, _, true) => Some("DELETED"),
        _ => None,
    }
}

fn render(view: &View, batch: Vec<(&'static str, Arc<Obj>)>) -> Bytes {
    let size = batch.iter().map(|(_, o)| o.body.len() + 96).sum();
    let mut buf = BytesMut::with_capacity(size);
    for (kind, obj) in batch {
        view.put_event(&mut buf, kind, &obj);
    }
    buf.freeze()
}
