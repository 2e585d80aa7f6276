//! Gateway API resources (`gateway.networking.k8s.io` v1, v1beta1).

mod gateway;
mod http_route;

pub use gateway::{GatewayDoc, WAYPOINT_CLASSES};
pub use http_route::{
    BackendRefSpec, HeaderModifierSpec, HttpRouteDoc, MatchSpec, PathModifierSpec, RouteFilter,
    Rule,
};
