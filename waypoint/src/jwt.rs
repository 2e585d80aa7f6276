//! RequestAuthentication's verification: keys (fetched and inline) and the
//! signature and claim checks. Where tokens are found and what a verified one
//! means to AuthorizationPolicy is `waypoint_filters::jwt`; the request stage
//! is `proxy::authn`.

mod blocked;
pub mod jwks;
pub mod verify;

pub use jwks::Jwks;
