//! The HTTP authorizer: Envoy's ext_authz HTTP service protocol on HTTP/1.1.
//! The proxy sends a copy of the client's request head (same method, its
//! configured path prefix before the original path and query, the headers it
//! selects) with the body only when asked to include it. A 200 allows; any
//! other status denies and goes back to the client with its headers and body,
//! and a 5xx is the authorizer failing.

use super::{denied_body, header_allows, State, DECISION_HEADER, EXTRA_DENY_HEADER};
use super::{RESPONSE_HEADER, RESULT_HEADER};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How [`HttpAuthz`] decides a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpRule {
    /// By the request's `x-ext-authz` header (see [`super::DECISION_HEADER`]);
    /// a denial is a 403.
    HeaderDecides,
    /// Allows after this long, for timeout tests.
    Delay(Duration),
    /// Answers this status: 200 allows, a 5xx is an authorizer error, any other
    /// is a denial with that status.
    Status(StatusCode),
    /// Allows only a request whose body contains this text, else a 403; for
    /// `includeRequestBodyInCheck`.
    BodyContains(String),
}

/// A check request as the authorizer received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// The path and query, the proxy's prefix included.
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

type Shared = State<HttpRule, Recorded>;

pub struct HttpAuthz {
    pub addr: SocketAddr,
    state: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpAuthz {
    /// Listens on 127.0.0.1 with [`HttpRule::HeaderDecides`]. Connections are
    /// kept alive and served concurrently, as a proxy's pool expects.
    pub async fn start() -> HttpAuthz {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::new(HttpRule::HeaderDecides));
        let shared = state.clone();
        let task = super::accept_loop(listener, move |io| {
            let state = shared.clone();
            async move {
                let svc = hyper::service::service_fn(move |req| check(state.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .await;
            }
        });
        HttpAuthz { addr, state, task }
    }

    pub fn set_rule(&self, rule: HttpRule) {
        self.state.set_rule(rule);
    }

    /// Every check received, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.seen()
    }

    pub fn calls(&self) -> u64 {
        self.state.calls()
    }
}

impl Drop for HttpAuthz {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Answer = http::Response<Full<Bytes>>;

async fn check(state: Arc<Shared>, req: hyper::Request<Incoming>) -> Result<Answer, hyper::Error> {
    let (head, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let path = head.uri.path_and_query().map_or("/", |p| p.as_str());
    // A value that is not text is still present, and so not `allow`.
    let decision = head.headers.get(DECISION_HEADER);
    let header_allows = header_allows(decision.map(|v| v.to_str().unwrap_or_default()));
    let rule = state.record(Recorded {
        method: head.method.to_string(),
        path: path.to_string(),
        headers: head.headers.clone(),
        body: body.clone(),
    });
    let allow = match rule {
        HttpRule::HeaderDecides => header_allows,
        HttpRule::Delay(d) => {
            tokio::time::sleep(d).await;
            true
        }
        HttpRule::Status(StatusCode::OK) => true,
        HttpRule::Status(status) => return Ok(denied(status, path)),
        HttpRule::BodyContains(text) => contains(&body, text.as_bytes()),
    };
    Ok(if allow {
        allowed()
    } else {
        denied(StatusCode::FORBIDDEN, path)
    })
}

fn allowed() -> Answer {
    http::Response::builder()
        .header(RESULT_HEADER, "allowed")
        .header(RESPONSE_HEADER, "ok")
        .body(Full::default())
        .unwrap()
}

fn denied(status: StatusCode, path: &str) -> Answer {
    http::Response::builder()
        .status(status)
        .header(RESULT_HEADER, "denied")
        .header(EXTRA_DENY_HEADER, "yes")
        .body(Full::new(Bytes::from(denied_body(path))))
        .unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests;
