//! Kubernetes, Istio and Gateway API manifests → the waypoint IR.
//!
//! [`load_dir`] reads a directory, [`load_sources`] in-memory files; both parse
//! every document, translate the resources once into a validated
//! [`waypoint_ir::Snapshot`], and report problems as [`Diagnostic`]s that name the
//! file, the resource (`Kind namespace/name`) and the field. Any error fails the
//! load as a whole, so a running proxy can keep its last good snapshot.
//! No networking, no async.

mod diag;
mod duration;
mod envoy_gateway;
mod gateway_api;
mod istio;
mod kube;
mod parse;
mod report;
mod source;
mod translate;

pub use diag::{Diagnostic, Severity};
pub use report::routing_table;
pub use source::Source;

use std::path::Path;

#[derive(Debug, Clone)]
pub struct Options {
    /// Kubernetes cluster domain: services are `name.ns.svc.<cluster_domain>`.
    pub cluster_domain: String,
    /// SPIFFE trust domain of workload identities.
    pub trust_domain: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cluster_domain: "cluster.local".into(),
            trust_domain: "cluster.local".into(),
        }
    }
}

/// A valid world, with whatever did not stop it from loading.
#[derive(Debug)]
pub struct Loaded {
    pub snapshot: waypoint_ir::Snapshot,
    pub warnings: Vec<Diagnostic>,
}

/// Loads every `*.yaml`, `*.yml` and `*.json` below `dir`.
pub fn load_dir(dir: &Path, opts: &Options) -> Result<Loaded, Vec<Diagnostic>> {
    let sources = source::read_dir(dir)?;
    load_sources(&sources, opts)
}

/// Loads manifests already in memory (the demo embeds its example).
pub fn load_sources(sources: &[Source], opts: &Options) -> Result<Loaded, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let resources = parse::parse_all(sources, &mut diags);
    let snapshot = translate::translate(&resources, opts, &mut diags);
    if diags.iter().any(|d| d.severity == Severity::Error) {
        diags.sort_by_key(|d| d.severity != Severity::Error);
        return Err(diags);
    }
    Ok(Loaded {
        snapshot,
        warnings: diags,
    })
}

#[cfg(test)]
mod tests;
