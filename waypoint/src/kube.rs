//! The Kubernetes API as the config source: watches feed a store of trimmed
//! objects ([`scope`]), the part this waypoint serves is translated by the same
//! code as a directory of manifests (`waypoint_config::load_objects`), and the
//! snapshot is swapped in as a directory reload swaps it ([`source`]).

mod args;
mod authorizers;
mod endpoints;
pub mod kinds;
pub mod lease;
pub mod scope;
pub mod source;
pub mod status;
mod watch;

pub use args::{client_for, ConfigSource, SourceArgs};
pub use scope::GatewayRef;
