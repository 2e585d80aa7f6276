//! Gateway API resources (`gateway.networking.k8s.io` v1, v1beta1; TCPRoute
//! also v1alpha2).

mod gateway;
mod grpc_route;
mod http_route;
mod tcp_route;

pub use gateway::{GatewayDoc, WAYPOINT_CLASSES};
pub use grpc_route::{GrpcMatch, GrpcRouteDoc, GrpcRule, MethodMatch};
pub use http_route::{
    BackendRefSpec, HeaderModifierSpec, HttpRouteDoc, MatchSpec, ParentRef, PathModifierSpec,
    RouteFilter, Rule,
};
pub use tcp_route::TcpRouteDoc;
