//! Asking an external authorizer (AuthorizationPolicy `CUSTOM`), as Envoy's
//! `ext_authz` filters do for Istio: over gRPC
//! (`envoy.service.auth.v3.Authorization/Check`) or Envoy's HTTP protocol, to
//! an endpoint of the provider's Service picked by its cluster (HBONE to a
//! mesh endpoint, plaintext otherwise), within the provider's timeout.
//!
//! The answer is an [`Outcome`]; what a failure means (`failOpen`,
//! `statusOnError`) is the caller's to apply.

mod dial;
mod grpc;
mod http;

pub use grpc::PARTIAL_BODY;

use crate::identity::SpiffeId;
use crate::proxy::HboneUpstream;
use crate::state::Runtime;
use bytes::Bytes;
use pingora::http::RequestHeader;
use std::net::SocketAddr;
use waypoint_ir::{ExtAuthzProtocol, ExtAuthzProvider};

/// What the authorizer is told about a request (or, without `head`, a TCP
/// connection).
pub struct CheckInput<'a> {
    pub head: Option<&'a RequestHeader>,
    /// The body read for the check, and whether it was cut short.
    pub body: Option<(&'a [u8], bool)>,
    pub source: Option<&'a SpiffeId>,
    /// The original client.
    pub source_addr: Option<SocketAddr>,
    /// The address the client asked for (the HBONE target).
    pub destination: Option<SocketAddr>,
    /// `%PROTOCOL%`: `HTTP/1.1`, `HTTP/2`.
    pub protocol: &'static str,
}

/// The authorizer's decision.
#[derive(Debug)]
pub enum Outcome {
    Allow(Allowed),
    Deny(Denied),
    /// No decision: unreachable, timed out, a gRPC error or an HTTP 5xx.
    Failed(String),
}

/// What an allowing authorizer changes.
#[derive(Debug, Default)]
pub struct Allowed {
    /// Applied to the request going upstream, in order.
    pub request: Vec<HeaderEdit>,
    pub remove: Vec<::http::HeaderName>,
    /// Applied to the response going back to the client.
    pub response: Vec<HeaderEdit>,
    pub query_set: Vec<(String, String)>,
    pub query_remove: Vec<String>,
}

/// A denial, sent to the client as it is.
#[derive(Debug)]
pub struct Denied {
    pub status: u16,
    pub headers: Vec<(::http::HeaderName, ::http::HeaderValue)>,
    pub body: Bytes,
}

/// Envoy's `HeaderValueOption` actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    Set,
    Append,
    AddIfAbsent,
    SetIfExists,
}

#[derive(Debug, Clone)]
pub struct HeaderEdit {
    pub edit: Edit,
    pub name: ::http::HeaderName,
    pub value: ::http::HeaderValue,
}

impl HeaderEdit {
    pub fn apply(&self, headers: &mut impl EditHeaders) {
        let present = headers.has(&self.name);
        match self.edit {
            Edit::Set => headers.set(&self.name, &self.value),
            Edit::Append => headers.add(&self.name, &self.value),
            Edit::AddIfAbsent if !present => headers.set(&self.name, &self.value),
            Edit::SetIfExists if present => headers.set(&self.name, &self.value),
            _ => {}
        }
    }
}

/// A request's or a response's headers, which Pingora changes through its
/// own methods (they keep the header names' case).
pub trait EditHeaders {
    fn has(&self, name: &::http::HeaderName) -> bool;
    fn set(&mut self, name: &::http::HeaderName, value: &::http::HeaderValue);
    fn add(&mut self, name: &::http::HeaderName, value: &::http::HeaderValue);
}

macro_rules! edit_headers {
    ($t:ty) => {
        impl EditHeaders for $t {
            fn has(&self, name: &::http::HeaderName) -> bool {
                self.headers.contains_key(name)
            }
            fn set(&mut self, name: &::http::HeaderName, value: &::http::HeaderValue) {
                let _ = self.insert_header(name.clone(), value.clone());
            }
            fn add(&mut self, name: &::http::HeaderName, value: &::http::HeaderValue) {
                let _ = self.append_header(name.clone(), value.clone());
            }
        }
    };
}
edit_headers!(RequestHeader);
edit_headers!(pingora::http::ResponseHeader);

/// What a check means for the request or connection, `failOpen` applied.
pub enum Decision {
    /// It goes on, with the authorizer's changes when it allowed.
    Go(Option<Allowed>),
    Deny(Denied),
    /// The check failed and the provider does not fail open.
    Refuse,
}

impl Outcome {
    /// The result as Envoy's ext_authz stats name it.
    fn stat(&self, fail_open: bool) -> &'static str {
        match self {
            Outcome::Allow(_) => "ok",
            Outcome::Deny(_) => "denied",
            Outcome::Failed(_) if fail_open => "failure_mode_allowed",
            Outcome::Failed(_) => "error",
        }
    }
}

/// The waypoint's connections to authorizers, shared by every request.
pub struct ExtAuthz {
    dial: dial::Dialer,
}

impl ExtAuthz {
    pub fn new(hbone: Option<HboneUpstream>) -> Self {
        ExtAuthz {
            dial: dial::Dialer::new(hbone),
        }
    }

    /// Asks `provider` and applies its `failOpen`, counting the result in
    /// `waypoint_ext_authz_total`.
    pub async fn decide(
        &self,
        rt: &Runtime,
        provider: &ExtAuthzProvider,
        input: &CheckInput<'_>,
        metrics: &crate::metrics::Metrics,
    ) -> Decision {
        let outcome = self.check(rt, provider, input).await;
        let stat = outcome.stat(provider.fail_open);
        metrics
            .ext_authz
            .with_label_values(&[provider.name.as_str(), stat])
            .inc();
        match outcome {
            Outcome::Allow(allowed) => Decision::Go(Some(allowed)),
            Outcome::Deny(denied) => Decision::Deny(denied),
            Outcome::Failed(why) if provider.fail_open => {
                log::warn!("ext_authz {}: {why}; failing open", provider.name);
                Decision::Go(None)
            }
            Outcome::Failed(why) => {
                log::warn!("ext_authz {}: {why}; refusing", provider.name);
                Decision::Refuse
            }
        }
    }

    /// Asks `provider` about `input`, within the provider's timeout.
    async fn check(
        &self,
        rt: &Runtime,
        provider: &ExtAuthzProvider,
        input: &CheckInput<'_>,
    ) -> Outcome {
        let asked = async {
            let endpoint = self.dial.endpoint(rt, provider)?;
            match &provider.protocol {
                ExtAuthzProtocol::Grpc => {
                    let channel = self.dial.grpc(rt, provider, &endpoint);
                    grpc::check(channel, provider, input).await
                }
                ExtAuthzProtocol::Http(rules) => {
                    let mut sender = self.dial.http(&endpoint).await?;
                    let host = &rt.snapshot.service(provider.service).hostname;
                    let outcome = http::check(&mut sender, rules, host, provider, input).await;
                    if outcome.is_ok() {
                        self.dial.give_back(&endpoint, sender);
                    }
                    outcome
                }
            }
        };
        match tokio::time::timeout(provider.timeout, asked).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(why)) => Outcome::Failed(why),
            Err(_) => Outcome::Failed(format!("no answer within {:?}", provider.timeout)),
        }
    }
}
