//! The Pingora `ProxyHttp` service shared by the HBONE and plaintext listeners.
//! Each hook asks `waypoint_filters` for a decision and does the I/O it implies.

mod ctx;
mod reply;

pub use ctx::RequestCtx;

use crate::hbone::HboneMeta;
use crate::state::State;
use async_trait::async_trait;
use log::warn;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use std::net::SocketAddr;
use std::sync::Arc;
use waypoint_filters::{Decision, RequestView, ResponseFlag};
use waypoint_ir::Target;

pub struct WaypointProxy {
    state: Arc<State>,
}

impl WaypointProxy {
    pub fn new(state: Arc<State>) -> Self {
        WaypointProxy { state }
    }
}

/// The tunnel metadata of the request's downstream, when it came over HBONE.
fn hbone_meta(session: &Session) -> Option<HboneMeta> {
    let digest = session.as_downstream().digest()?;
    let proxy = digest.proxy_digest.as_ref()?;
    proxy
        .user_data
        .as_ref()?
        .downcast_ref::<HboneMeta>()
        .cloned()
}

#[async_trait]
impl ProxyHttp for WaypointProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let rt = self.state.current();
        ctx.runtime = Some(rt.clone());
        let meta = hbone_meta(session);
        let target = match &meta {
            Some(meta) => rt.snapshot.resolve_target(meta.target),
            None => session
                .req_header()
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .or_else(|| session.req_header().uri.host())
                .and_then(|host| rt.snapshot.resolve_host(host)),
        };
        ctx.source = meta.map(|m| m.source);
        let Some(target) = target else {
            ctx.flag = ResponseFlag::NoRouteFound;
            reply::send(session, 404, &[], "no service for this destination\n").await?;
            return Ok(true);
        };
        let decision = {
            let req = session.req_header();
            let port = match target {
                Target::Service { port, .. } | Target::Workload { port, .. } => port,
            };
            let view = RequestView::new(&req.method, &req.uri, &req.headers, port);
            waypoint_filters::decide(&rt.snapshot, target, &view, &mut rand::rng())
        };
        match decision {
            Decision::Reply(local) => {
                ctx.flag = local.flag;
                reply::send(session, local.status, &local.headers, &local.body).await?;
                Ok(true)
            }
            Decision::Forward(fwd) => {
                ctx::apply_request_edits(session, &fwd)?;
                ctx.forward = Some(ctx::Forward::from_decision(&rt.snapshot, &fwd));
                Ok(false)
            }
        }
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let addr = ctx.pick_endpoint().ok_or_else(|| {
            ctx.flag = ResponseFlag::NoHealthyUpstream;
            Error::explain(HTTPStatus(503), "no healthy upstream")
        })?;
        ctx.upstream = Some(addr);
        Ok(Box::new(HttpPeer::new(addr, false, String::new())))
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(route) = ctx.route() {
            ctx::apply_response_edits(&route.filters.response_headers, resp)?;
        }
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let (status, flag) = crate::error::classify(e, ctx.flag);
        ctx.flag = flag;
        if status != 0 {
            let body = format!("{}\n", crate::error::describe(flag));
            if let Err(err) = reply::send(session, status, &[], &body).await {
                warn!("failed to send {status} downstream: {err}");
            }
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session
            .response_written()
            .map(|r| r.status.as_u16())
            .unwrap_or(0);
        let req = session.req_header();
        log::debug!(
            target: "access",
            "{} {} {} {} flag={} upstream={} source={} error={}",
            req.method,
            req.uri,
            status,
            ctx.route_name().unwrap_or("-"),
            ctx.flag.as_str(),
            ctx.upstream.map(|a: SocketAddr| a.to_string()).unwrap_or_else(|| "-".into()),
            ctx.source.as_ref().map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
            e.map(|e| e.to_string()).unwrap_or_else(|| "-".into()),
        );
    }
}
