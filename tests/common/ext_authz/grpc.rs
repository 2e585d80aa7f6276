//! The gRPC authorizer: `envoy.service.auth.v3.Authorization/Check`, envoy-types'
//! generated service served by hyper's HTTP/2 on our own accept loop (so that
//! dropping it closes the connections a waypoint pools).

use super::{denied_body, header_allows, State, DECISION_HEADER, REMOVE_HEADER};
use super::{RESPONSE_HEADER, RESULT_HEADER};
use envoy_types::ext_authz::v3::pb::{
    Authorization, AuthorizationServer, CheckRequest, CheckResponse, HeaderAppendAction,
    HttpStatusCode,
};
use envoy_types::ext_authz::v3::{
    CheckResponseExt, DeniedHttpResponseBuilder, OkHttpResponseBuilder,
};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tower::Service;

/// How [`GrpcAuthz`] decides a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrpcRule {
    /// By the request's `x-ext-authz` header (see [`super::DECISION_HEADER`]).
    HeaderDecides,
    /// Allows only a peer whose `attributes.source.principal` is this SPIFFE id.
    AllowPrincipal(String),
    /// Allows after this long, for timeout tests.
    Delay(Duration),
    /// Fails the RPC with gRPC `UNAVAILABLE`: an authorizer error, not a denial.
    Unavailable,
}

type Shared = State<GrpcRule, CheckRequest>;

pub struct GrpcAuthz {
    pub addr: SocketAddr,
    state: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl GrpcAuthz {
    /// Listens on 127.0.0.1 with [`GrpcRule::HeaderDecides`].
    pub async fn start() -> GrpcAuthz {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::new(GrpcRule::HeaderDecides));
        let svc = AuthorizationServer::from_arc(Arc::new(Checker(state.clone())));
        let task = super::accept_loop(listener, move |io| {
            let svc = svc.clone();
            async move {
                let svc = hyper::service::service_fn(move |req| svc.clone().call(req));
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(io, svc)
                    .await;
            }
        });
        GrpcAuthz { addr, state, task }
    }

    pub fn set_rule(&self, rule: GrpcRule) {
        self.state.set_rule(rule);
    }

    /// Every check received, in order, including those failed on purpose.
    pub fn requests(&self) -> Vec<CheckRequest> {
        self.state.seen()
    }

    pub fn calls(&self) -> u64 {
        self.state.calls()
    }

    /// A client on its own HTTP/2 connection.
    pub async fn client(&self) -> AuthorizationClient<Channel> {
        AuthorizationClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }
}

impl Drop for GrpcAuthz {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Checker(Arc<Shared>);

#[tonic::async_trait]
impl Authorization for Checker {
    async fn check(&self, req: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        let req = req.into_inner();
        let allow = match self.0.record(req.clone()) {
            GrpcRule::HeaderDecides => header_allows(header(&req, DECISION_HEADER).as_deref()),
            GrpcRule::AllowPrincipal(id) => principal(&req) == Some(id.as_str()),
            GrpcRule::Delay(d) => {
                tokio::time::sleep(d).await;
                true
            }
            GrpcRule::Unavailable => return Err(Status::unavailable("unavailable as asked")),
        };
        Ok(Response::new(if allow { allowed() } else { denied(&req) }))
    }
}

fn allowed() -> CheckResponse {
    let mut ok = OkHttpResponseBuilder::new();
    // Overwrite: a client's own copy must not pass for the authorizer's verdict.
    let overwrite = Some(HeaderAppendAction::OverwriteIfExistsOrAdd);
    ok.add_header(RESULT_HEADER, "allowed", overwrite, false)
        .add_response_header(RESPONSE_HEADER, "ok", overwrite, false)
        .remove_header(REMOVE_HEADER);
    let mut resp = CheckResponse::with_status(Status::ok("allowed"));
    resp.set_http_response(ok);
    resp
}

fn denied(req: &CheckRequest) -> CheckResponse {
    let path = http_attrs(req).map_or("", |h| h.path.as_str());
    let mut deny = DeniedHttpResponseBuilder::new();
    deny.set_http_status(HttpStatusCode::Forbidden)
        .add_header(RESULT_HEADER, "denied", None, false)
        .set_body(denied_body(path));
    let mut resp = CheckResponse::with_status(Status::permission_denied("denied"));
    resp.set_http_response(deny);
    resp
}

type HttpAttrs = envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;

fn http_attrs(req: &CheckRequest) -> Option<&HttpAttrs> {
    req.attributes.as_ref()?.request.as_ref()?.http.as_ref()
}

fn principal(req: &CheckRequest) -> Option<&str> {
    Some(req.attributes.as_ref()?.source.as_ref()?.principal.as_str())
}

/// A request header by its lower-case name, from the `headers` map or, when
/// the client sends raw headers (`encode_raw_headers`), from `header_map`.
/// Not case-folded: Envoy lower-cases names, and a client that does not should
/// fail the tests.
fn header(req: &CheckRequest, name: &str) -> Option<String> {
    let http = http_attrs(req)?;
    if let Some(v) = http.headers.get(name) {
        return Some(v.clone());
    }
    let raw = http
        .header_map
        .as_ref()?
        .headers
        .iter()
        .find(|h| h.key == name)?;
    Some(if raw.raw_value.is_empty() {
        raw.value.clone()
    } else {
        String::from_utf8_lossy(&raw.raw_value).into_owned()
    })
}

#[cfg(test)]
mod tests;
