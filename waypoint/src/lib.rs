//! pingora-waypoint: an L7 waypoint for Istio's ambient mesh on Pingora.
//!
//! Data path: [`hbone::server`] ends mTLS HTTP/2 CONNECT tunnels and hands each
//! tunnel's bytes to the one Pingora proxy ([`proxy`]); the plaintext listener in
//! [`app`] feeds the same proxy. The proxy asks `waypoint_filters` what to do with
//! each request against the current [`state`] and forwards through [`upstream`].

pub mod access_log;
pub mod admin;
pub mod app;
pub mod ca;
pub mod client;
pub mod cmd;
pub mod controller;
pub mod detect;
pub mod dispatch;
pub mod echo;
pub mod error;
pub mod ext_authz;
pub mod hbone;
pub mod identity;
pub mod jwt;
pub mod kube;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod proxy;
pub mod reload;
pub mod state;
pub mod tcp;
pub mod testing;
pub mod trace;
pub mod upstream;
pub mod workers;
