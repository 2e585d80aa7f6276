//! External authorizers for AuthorizationPolicy `action: CUSTOM` tests: real
//! servers for Envoy's two ext_authz protocols on loopback, each recording what
//! it was asked and deciding by a rule the test can change between requests.
//!
//! - [`GrpcAuthz`]: `envoy.service.auth.v3.Authorization/Check` over plaintext
//!   HTTP/2 (Istio's `envoyExtAuthzGrpc`).
//! - [`HttpAuthz`]: Envoy's HTTP authorization service protocol over HTTP/1.1
//!   (Istio's `envoyExtAuthzHttp`).
//!
//! Both answer with the same marker headers, so a case can assert which way the
//! check went on either protocol.

pub mod grpc;
pub mod http;

pub use grpc::{GrpcAuthz, GrpcRule};
pub use http::{HttpAuthz, HttpRule, Recorded};

use hyper_util::rt::TokioIo;
use std::future::Future;
use std::sync::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// The request header a `HeaderDecides` rule reads: `allow` or absent allows,
/// any other value denies (an authorizer defaults to no for what it does not know).
pub const DECISION_HEADER: &str = "x-ext-authz";
/// Added upstream on allow (`allowed`) and to the client's reply on deny (`denied`).
pub const RESULT_HEADER: &str = "x-ext-authz-check-result";
/// Added to the client's response on allow, with the value `ok`.
pub const RESPONSE_HEADER: &str = "x-ext-authz-response";
/// The gRPC authorizer asks for this request header to be removed on allow.
pub const REMOVE_HEADER: &str = "x-remove-me";
/// The HTTP authorizer adds this (value `yes`) to its denials only.
pub const EXTRA_DENY_HEADER: &str = "x-extra-deny";

/// The body of a denial for a request to `path`.
pub fn denied_body(path: &str) -> String {
    format!("denied by ext_authz for {path}")
}

fn header_allows(value: Option<&str>) -> bool {
    value.is_none_or(|v| v == "allow")
}

/// What a server saw and the rule it answers by. The rule is read once per
/// request, after the request is recorded, so a test that waits for `calls()`
/// to grow knows the request in flight has its rule already.
struct State<R, T> {
    rule: Mutex<R>,
    seen: Mutex<Vec<T>>,
}

impl<R: Clone, T: Clone> State<R, T> {
    fn new(rule: R) -> Self {
        State {
            rule: Mutex::new(rule),
            seen: Mutex::new(Vec::new()),
        }
    }

    fn record(&self, request: T) -> R {
        self.seen.lock().unwrap().push(request);
        self.rule.lock().unwrap().clone()
    }

    fn seen(&self) -> Vec<T> {
        self.seen.lock().unwrap().clone()
    }

    fn calls(&self) -> u64 {
        self.seen.lock().unwrap().len() as u64
    }

    fn set_rule(&self, rule: R) {
        *self.rule.lock().unwrap() = rule;
    }
}

/// Accepts connections and serves each with `serve`. The connections are
/// children of the returned task, so aborting it closes them all: tonic's and
/// hyper's own servers detach connection tasks, and a client's pooled
/// connection would go on being answered after the test dropped the server.
fn accept_loop<F, Fut>(listener: TcpListener, serve: F) -> JoinHandle<()>
where
    F: Fn(TokioIo<TcpStream>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((tcp, _)) = accepted else { return };
                    // Small request/answer exchanges: Nagle would hold each
                    // answer back for the client's delayed ACK.
                    let _ = tcp.set_nodelay(true);
                    conns.spawn(serve(TokioIo::new(tcp)));
                }
                // Reaps finished connections so the set does not grow.
                Some(_) = conns.join_next() => {}
            }
        }
    })
}

/// Waits (at most 5 s) until `done` holds, for the servers' own tests.
#[cfg(test)]
async fn wait_until(mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}
