//! Names that tie IR objects back to the user resources they came from.

use serde::Serialize;
use std::fmt;

/// The kinds of resource the waypoint understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum ResourceKind {
    Service,
    Pod,
    EndpointSlice,
    Namespace,
    ServiceEntry,
    WorkloadEntry,
    HTTPRoute,
    GRPCRoute,
    TCPRoute,
    VirtualService,
    DestinationRule,
    Gateway,
    BackendTrafficPolicy,
    AuthorizationPolicy,
    RequestAuthentication,
    /// Only Istio's mesh config, ConfigMap `istio` of the root namespace.
    ConfigMap,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Service => "Service",
            ResourceKind::Pod => "Pod",
            ResourceKind::EndpointSlice => "EndpointSlice",
            ResourceKind::Namespace => "Namespace",
            ResourceKind::ServiceEntry => "ServiceEntry",
            ResourceKind::WorkloadEntry => "WorkloadEntry",
            ResourceKind::HTTPRoute => "HTTPRoute",
            ResourceKind::GRPCRoute => "GRPCRoute",
            ResourceKind::TCPRoute => "TCPRoute",
            ResourceKind::VirtualService => "VirtualService",
            ResourceKind::DestinationRule => "DestinationRule",
            ResourceKind::Gateway => "Gateway",
            ResourceKind::BackendTrafficPolicy => "BackendTrafficPolicy",
            ResourceKind::AuthorizationPolicy => "AuthorizationPolicy",
            ResourceKind::RequestAuthentication => "RequestAuthentication",
            ResourceKind::ConfigMap => "ConfigMap",
        }
    }
}

/// `kind namespace/name`, the way every diagnostic and the config dump name a resource.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ResourceRef {
    pub kind: ResourceKind,
    pub namespace: String,
    pub name: String,
}

impl ResourceRef {
    pub fn new(kind: ResourceKind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ResourceRef {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind.as_str(), self.namespace, self.name)
    }
}
