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

    /// Asks `provider` about `input`, within the provider's timeout.
    pub async fn check(
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
