//! Istio networking resources (`networking.istio.io` v1, v1beta1, v1alpha3)
//! and `AuthorizationPolicy`, `RequestAuthentication` (`security.istio.io` v1, v1beta1).

pub mod authorization_policy;
pub mod destination_rule;
pub mod mesh_config;
pub mod request_authentication;
mod service_entry;
mod virtual_service;

pub use authorization_policy::AuthorizationPolicyDoc;
pub use destination_rule::DestinationRuleDoc;
pub use mesh_config::ConfigMapDoc;
pub use request_authentication::RequestAuthenticationDoc;
pub use service_entry::{ServiceEntryDoc, WorkloadEntryDoc, WorkloadEntrySpec};
pub use virtual_service::{
    Destination, FaultSpec, HeaderOperations, HttpMatch, HttpRoute, PercentSpec, Retries,
    StringMatchSpec, VirtualServiceDoc,
};
