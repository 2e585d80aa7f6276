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

/// `{"apiVersion":"…","kind":"…"`: what every object served at `version` starts with.
pub(crate) fn type_prefix(ty: &ResourceType, version: &str) -> Bytes {
    let api_version = serde_json::to_string(&ty.api_version(version)).expect("a string serializes");
    let kind = serde_json::to_string(&ty.kind).expect("a string serializes");
    Bytes::from(format!("{{\"apiVersion\":{api_version},\"kind\":{kind}"))
}

/// A stored body (a JSON object without `apiVersion`/`kind`) behind a type prefix.
pub(crate) fn put_object(buf: &mut BytesMut, prefix: &[u8], body: &[u8]) {
    buf.put_slice(prefix);
    if body.len() > 2 {
        buf.put_u8(b',');
        buf.put_slice(&body[1..]);
    } else {
        buf.put_u8(b'}');
    }
}

pub(crate) fn object(prefix: &[u8], body: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(prefix.len() + body.len() + 1);
    put_object(&mut buf, prefix, body);
    buf.freeze()
}

/// One watch event line: `{"type":"ADDED","object":{…}}\n`.
pub(crate) fn put_event(buf: &mut BytesMut, kind: &str, prefix: &[u8], body: &[u8]) {
    buf.put_slice(b"{\"type\":\"");
    buf.put_slice(kind.as_bytes());
    buf.put_slice(b"\",\"object\":");
    put_object(buf, prefix, body);
    buf.put_slice(b"}\n");
}

/// A BOOKMARK carries only a resourceVersion; the one that ends a streaming list's
/// initial events says so in an annotation.
pub(crate) fn bookmark(prefix: &[u8], rv: u64, initial_events_end: bool) -> Bytes {
    let annotations = if initial_events_end {
        ",\"annotations\":{\"k8s.io/initial-events-end\":\"true\"}"
    } else {
        ""
    };
    let body = format!("{{\"metadata\":{{\"resourceVersion\":\"{rv}\"{annotations}}}}}");
    let mut buf = BytesMut::new();
    put_event(&mut buf, "BOOKMARK", prefix, body.as_bytes());
    buf.freeze()
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
    prefix: Bytes,
    items: std::vec::IntoIter<Arc<Obj>>,
    first: bool,
    done: bool,
}

impl ListBody {
    /// `list_kind` and `metadata` (a JSON object) open the list; `items` follow.
    pub(crate) fn new(
        prefix: Bytes,
        api_version: &str,
        list_kind: &str,
        metadata: &str,
        items: Vec<Arc<Obj>>,
    ) -> ListBody {
        let head = format!(
            "{{\"apiVersion\":{},\"kind\":{},\"metadata\":{metadata},\"items\":[",
            serde_json::Value::from(api_version),
            serde_json::Value::from(list_kind)
        );
        ListBody {
            head: Some(head.into()),
            prefix,
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
            put_object(&mut buf, &self.prefix, &obj.body);
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
