//! Kubernetes core and discovery resources, as the waypoint reads them.

mod endpoint_slice;
mod pod;
mod service;

pub use endpoint_slice::{EndpointSliceDoc, SERVICE_NAME_LABEL};
pub use pod::PodDoc;
pub use service::{IntOrString, ServiceDoc, ServicePortSpec};

/// The label that puts a namespace or pod in the ambient mesh.
pub const DATAPLANE_MODE: &str = "istio.io/dataplane-mode";
