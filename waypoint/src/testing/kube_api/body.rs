//! What goes on the wire: objects, lists and watch events assembled from stored
//! bytes, and the response body that streams them.

use super::resources::ResourceType;
use super::status::ApiError;
use super::store::Obj;
use bytes::{BufMut, Bytes, BytesMut};
use hyper::body::{Frame, SizeHint};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// A list body is cut into chunks of about this size, so a list of 50,000 Pods is
/// never one buffer.
const CHUNK: usize = 64 * 1024;

/// How objects of one kind are rendered for one request: at the requested version,
/// or as `PartialObjectMetadata` when the client asked for metadata only
/// (`Accept: application/json;as=PartialObjectMetadata…`, what kube sends for
/// `Api<PartialObjectMeta<K>>` and `metadata_watcher`).
#[derive(Clone)]
pub(crate) struct View {
    /// `{"apiVersion":"…","kind":"…"`: what every object starts with.
    prefix: Bytes,
    api_version: String,
    kind: String,
    metadata_only: bool,
}

impl View {
    pub(crate) fn new(ty: &ResourceType, version: &str, accept: Option<&str>) -> View {
        let metadata_only = accept.is_some_and(|a| a.contains("as=PartialObjectMetadata"));
        let (api_version, kind) = match metadata_only {
            true => (
                "meta.k8s.io/v1".to_string(),
                "PartialObjectMetadata".to_string(),
            ),
            false => (ty.api_version(version), ty.kind.clone()),
        };
        let prefix = format!(
            "{{\"apiVersion\":{},\"kind\":{}",
            serde_json::Value::from(api_version.as_str()),
            serde_json::Value::from(kind.as_str())
        );
        View {
            prefix: prefix.into(),
            api_version,
            kind,
            metadata_only,
        }
    }

    /// The list's `apiVersion` and `kind`.
    pub(crate) fn list_type(&self) -> (&str, String) {
        (&self.api_version, format!("{}List", self.kind))
    }

    fn put(&self, buf: &mut BytesMut, obj: &Obj) {
        if self.metadata_only {
            put_object(buf, &self.prefix, &obj.metadata_body());
        } else {
            put_object(buf, &self.prefix, &obj.body);
        }
    }

    pub(crate) fn object(&self, obj: &Obj) -> Bytes {
        let mut buf = BytesMut::with_capacity(self.prefix.len() + obj.body.len() + 1);
        self.put(&mut buf, obj);
        buf.freeze()
    }

    /// One watch event line: `{"type":"ADDED","object":{…}}\n`.
    pub(crate) fn put_event(&self, buf: &mut BytesMut, kind: &str, obj: &Obj) {
        put_event_head(buf, kind);
        self.put(buf, obj);
        buf.put_slice(b"}\n");
    }

    /// A BOOKMARK carries only a resourceVersion; the one that ends a streaming
    /// list's initial events says so in an annotation.
    pub(crate) fn bookmark(&self, rv: u64, initial_events_end: bool) -> Bytes {
        let annotations = match initial_events_end {
            true => ",\"annotations\":{\"k8s.io/initial-events-end\":\"true\"}",
            false => "",
        };
        let body = format!("{{\"metadata\":{{\"resourceVersion\":\"{rv}\"{annotations}}}}}");
        let mut buf = BytesMut::new();
        put_event_head(&mut buf, "BOOKMARK");
        put_object(&mut buf, &self.prefix, body.as_bytes());
        buf.put_slice(b"}\n");
        buf.freeze()
    }
}

/// A stored body (a JSON object without `apiVersion`/`kind`) behind a type prefix.
fn put_object(buf: &mut BytesMut, prefix: &[u8], body: &[u8]) {
    buf.put_slice(prefix);
    if body.len() > 2 {
        buf.put_u8(b',');
        buf.put_slice(&body[1..]);
    } else {
        buf.put_u8(b'}');
    }
}

fn put_event_head(buf: &mut BytesMut, kind: &str) {
    buf.put_slice(b"{\"type\":\"");
    buf.put_slice(kind.as_bytes());
    buf.put_slice(b"\",\"object\":");
}

pub(crate) fn error_event(error: &ApiError) -> Bytes {
    Bytes::from(format!(
        "{{\"type\":\"ERROR\",\"object\":{}}}\n",
        error.to_value()
    ))
}

pub(crate) enum Body {
    Full(Option<Bytes>),
    List(ListBody),
    Watch(mpsc::Receiver<Bytes>),
}

impl Body {
    pub(crate) fn full(bytes: Bytes) -> Body {
        Body::Full(Some(bytes))
    }
}

/// A list response built chunk by chunk from the listed objects as the connection
/// takes them.
pub(crate) struct ListBody {
    head: Option<Bytes>,
    view: View,
    items: std::vec::IntoIter<Arc<Obj>>,
    first: bool,
    done: bool,
}

impl ListBody {
    /// `metadata` (a JSON object) opens the list; `items` follow.
    pub(crate) fn new(view: View, metadata: &str, items: Vec<Arc<Obj>>) -> ListBody {
        let (api_version, kind) = view.list_type();
        let head = format!(
            "{{\"apiVersion\":{},\"kind\":{},\"metadata\":{metadata},\"items\":[",
            serde_json::Value::from(api_version),
            serde_json::Value::from(kind)
        );
        ListBody {
            head: Some(head.into()),
            view,
            items: items.into_iter(),
            first: true,
            done: false,
        }
    }

    fn next_chunk(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        let mut buf = BytesMut::with_capacity(CHUNK + 4096);
        if let Some(head) = self.head.take() {
            buf.put_slice(&head);
        }
        while buf.len() < CHUNK {
            let Some(obj) = self.items.next() else {
                buf.put_slice(b"]}");
                self.done = true;
                break;
            };
            if !std::mem::take(&mut self.first) {
                buf.put_u8(b',');
            }
            self.view.put(&mut buf, &obj);
        }
        Some(buf.freeze())
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let data = |b: Option<Bytes>| b.map(|b| Ok(Frame::data(b)));
        match self.get_mut() {
            Body::Full(bytes) => Poll::Ready(data(bytes.take())),
            Body::List(list) => Poll::Ready(data(list.next_chunk())),
            Body::Watch(rx) => rx.poll_recv(cx).map(data),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Body::Full(None) => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
