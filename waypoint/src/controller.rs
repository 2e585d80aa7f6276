//! Our GatewayClass's side: what a waypoint Gateway turns into in the cluster.
//! [`render`] is the whole of it as plain objects, shared by the controller
//! and by `waypoint generate --standalone` for those who run no controller.

pub mod class;
pub mod gateway;
pub mod params;
pub mod reconcile;
pub mod render;

/// Our GatewayClass, and the controller named in its `controllerName` (and in
/// the `status.parents[]` entries the waypoint writes on HTTPRoutes).
pub const CLASS_NAME: &str = "pingora-waypoint";
pub use crate::kube::status::CONTROLLER_NAME;
