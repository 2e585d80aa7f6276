//! The request chain: one function that runs the request-time stages in a fixed
//! order and returns what the adapter must do. The adapter owns all I/O (writing
//! a local reply, picking an endpoint, connecting); this only decides.

use crate::{headers, route, split, RequestView, ResponseFlag};
use rand::Rng;
use waypoint_ir::{
    BackendFilters, BackendTarget, EndpointIdx, Redirect, Route, RouteAction, ServiceIdx, Snapshot,
    Target,
};

/// What to do with a request.
#[must_use = "a decision is only useful if the adapter acts on it"]
#[derive(Debug)]
pub enum Decision<'a> {
    Forward(ForwardDecision<'a>),
    Reply(LocalReply),
}

/// Proxy the request. The adapter applies the picked backend's filters and then
/// `route.filters` (request headers, URL rewrite using `matched`), then picks an
/// endpoint of (`service`, `subset`, `port`), or uses `pinned`.
#[derive(Debug, Clone)]
pub struct ForwardDecision<'a> {
    pub route: &'a Route,
    /// Index of the picked backend in the route's `Forward` list (`None`: a
    /// pinned workload, for which the split is skipped).
    pub backend: Option<usize>,
    /// The service whose route table `route` belongs to (the target's service).
    pub route_owner: ServiceIdx,
    /// Index into `route.matches` of the match that applied (`None`: the route
    /// has no matches).
    pub matched: Option<usize>,
    /// The backend service and the service port to reach it on: the backend's
    /// own port, or the port the request arrived on when it names none.
    pub service: ServiceIdx,
    pub port: u16,
    /// Index into the backend service's `subsets`.
    pub subset: Option<usize>,
    /// For workload-addressed traffic: the endpoint the client asked for, on
    /// `service`/`port`. The route's filters still apply; its split does not.
    pub pinned: Option<EndpointIdx>,
}

impl<'a> ForwardDecision<'a> {
    /// The picked backend's own filters (Gateway API `backendRefs[].filters`).
    pub fn backend_filters(&self) -> Option<&'a BackendFilters> {
        backend_filters(self.route, self.backend)
    }
}

/// The filters of backend `index` of `route`, if it has any.
pub fn backend_filters(route: &Route, index: Option<usize>) -> Option<&BackendFilters> {
    match &route.action {
        RouteAction::Forward(backends) => backends.get(index?)?.filters.as_deref(),
        _ => None,
    }
}

/// Answer the request locally, without contacting anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u16,
    pub flag: ResponseFlag,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl LocalReply {
    fn new(status: u16, flag: ResponseFlag, body: impl Into<String>) -> Self {
        LocalReply {
            status,
            flag,
            headers: Vec::new(),
            body: body.into(),
        }
    }
}

/// Decides what happens to a request for `target`. Stages, in order:
///
/// 1. Route selection on the target service's table for the client's namespace
///    (its consumer routes, else the producer's). Everything later is route
///    policy, so nothing can run before it; no route is Envoy's 404 `NR` (empty
///    body, as Envoy sends). Translation gives every port no route binds a
///    default route, so an empty table also means "no route".
/// 2. Redirect and direct response: they answer without a backend, so they come
///    before the split and never consume a random draw.
/// 3. Pinned endpoint (workload-addressed traffic): the client chose the backend,
///    so the split is skipped.
/// 4. Weighted split. No weight above zero, or an unresolved backend, answers
///    locally (500, or the backend's own status) with flag `NC`: the route has
///    no cluster to send to, and no endpoint is contacted. A backend's own
///    redirect answers here too: it applies only once that backend is picked.
///
/// Later issues insert fault injection and rate limiting between 1 and 2 (they
/// need the route, and must run before any backend is chosen).
pub fn decide<'a>(
    snapshot: &'a Snapshot,
    target: Target,
    req: &RequestView<'_>,
    rng: &mut impl Rng,
) -> Decision<'a> {
    let (owner, pinned) = match target {
        Target::Service { service, .. } => (service, None),
        Target::Workload {
            service, endpoint, ..
        } => (service, Some(endpoint)),
    };
    let Some(sel) = route::select(snapshot.service(owner), req) else {
        return Decision::Reply(LocalReply::new(404, ResponseFlag::NoRouteFound, ""));
    };
    let matched_path = sel.matched.and_then(|i| sel.route.matches[i].path.as_ref());
    let redirect = |r: &Redirect| {
        let mut reply = LocalReply::new(r.status, ResponseFlag::None, "");
        let location = headers::redirect_location(r, req, matched_path);
        reply.headers.push(("location".into(), location));
        Decision::Reply(reply)
    };
    let backends = match &sel.route.action {
        RouteAction::Redirect(r) => return redirect(r),
        RouteAction::DirectResponse { status, body } => {
            let body = body.clone().unwrap_or_default();
            return Decision::Reply(LocalReply::new(*status, ResponseFlag::None, body));
        }
        RouteAction::Forward(backends) => backends,
    };
    let forward = |backend, service, port, subset, pinned| {
        Decision::Forward(ForwardDecision {
            route: sel.route,
            backend,
            route_owner: owner,
            matched: sel.matched,
            service,
            port,
            subset,
            pinned,
        })
    };
    if pinned.is_some() {
        return forward(None, owner, req.port, None, pinned);
    }
    let Some(picked) = split::pick(backends, rng) else {
        return Decision::Reply(LocalReply::new(
            500,
            ResponseFlag::NoClusterFound,
            format!(
                "route {}: no backend with a weight above zero\n",
                sel.route.name
            ),
        ));
    };
    let backend = &backends[picked];
    if let Some(r) = backend.filters.as_ref().and_then(|f| f.redirect.as_ref()) {
        return redirect(r);
    }
    match &backend.target {
        BackendTarget::Service {
            service,
            port,
            subset,
        } => forward(
            Some(picked),
            *service,
            port.unwrap_or(req.port),
            *subset,
            None,
        ),
        BackendTarget::Invalid { status, reason } => Decision::Reply(LocalReply::new(
            *status,
            ResponseFlag::NoClusterFound,
            format!("route {}: {reason}\n", sel.route.name),
        )),
    }
}

#[cfg(test)]
#[path = "chain/tests.rs"]
mod tests;
