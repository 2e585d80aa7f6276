//! Kubernetes, Istio and Gateway API manifests → the waypoint IR.
//!
//! [`load_dir`] reads a directory, [`load_sources`] in-memory files, and
//! [`load_objects`] objects from the Kubernetes API ([`refresh_endpoints`]
//! applies an endpoint change to the last snapshot); all parse
//! every document, translate the resources once into a validated
//! [`waypoint_ir::Snapshot`], and report problems as [`Diagnostic`]s that name the
//! file, the resource (`Kind namespace/name`) and the field. Any error fails the
//! load as a whole, so a running proxy can keep its last good snapshot.
//! No networking, no async.

mod diag;
pub mod duration;
mod envoy_gateway;
mod gateway_api;
mod istio;
mod kube;
mod parse;
mod report;
mod source;
mod translate;

pub use diag::{Diagnostic, Severity};
// Where the mesh config is read from (ConfigMap `MESH_CONFIG_MAP` of
// `Options::root_namespace`, key `MESH_KEY`), for sources that fetch only it.
pub use istio::mesh_config::{ext_authz_services, MESH_KEY};
pub use parse::MESH_CONFIG_MAP;
pub use report::routing_table;
pub use source::Source;
pub use translate::{refresh_endpoints, Refresh};

use std::path::Path;

#[derive(Debug, Clone)]
pub struct Options {
    /// Kubernetes cluster domain: services are `name.ns.svc.<cluster_domain>`.
    pub cluster_domain: String,
    /// SPIFFE trust domain of workload identities.
    pub trust_domain: String,
    /// Istio's root namespace (mesh config `rootNamespace`): its
    /// AuthorizationPolicies targeting GatewayClass `istio-waypoint` apply to
    /// every waypoint.
    pub root_namespace: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cluster_domain: "cluster.local".into(),
            trust_domain: "cluster.local".into(),
            root_namespace: "istio-system".into(),
        }
    }
}

/// A valid world, with whatever did not stop it from loading: warnings, and
/// policies [`Severity::Refused`] (in force in their fail-closed form).
#[derive(Debug)]
pub struct Loaded {
    pub snapshot: waypoint_ir::Snapshot,
    pub warnings: Vec<Diagnostic>,
}

/// Loads every `*.yaml`, `*.yml` and `*.json` below `dir`.
pub fn load_dir(dir: &Path, opts: &Options) -> Result<Loaded, Vec<Diagnostic>> {
    let sources = source::read_dir(dir)?;
    let mut diags = Vec::new();
    let resources = parse::parse_all(&sources, &mut diags);
    // Translation reads none of the text (15 MB at 10,000 Services), and it
    // is when memory peaks.
    drop(sources);
    translate_parsed(resources, opts, diags)
}

/// Loads manifests already in memory (the demo embeds its example).
pub fn load_sources(sources: &[Source], opts: &Options) -> Result<Loaded, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let resources = parse::parse_all(sources, &mut diags);
    translate_parsed(resources, opts, diags)
}

fn translate_parsed(
    resources: parse::Resources,
    opts: &Options,
    mut diags: Vec<Diagnostic>,
) -> Result<Loaded, Vec<Diagnostic>> {
    let snapshot = translate::translate(resources, opts, &mut diags);
    if diags.iter().any(|d| d.severity == Severity::Error) {
        diags.sort_by_key(|d| d.severity != Severity::Error);
        return Err(diags);
    }
    Ok(Loaded {
        snapshot,
        warnings: diags,
    })
}

/// What loading objects from the Kubernetes API gave: a snapshot of everything
/// valid, and the resources left out, each with its errors.
#[derive(Debug)]
pub struct Partial {
    pub snapshot: waypoint_ir::Snapshot,
    /// Errors of the resources left out (each names its `Kind namespace/name`),
    /// and of policies [`Severity::Refused`], which are kept in a fail-closed
    /// form instead: leaving out a DENY would let through what it denies.
    pub rejected: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

/// Loads objects read from the Kubernetes API. Unlike a directory, which loads
/// whole or not at all, a resource with an error is rejected alone and the rest
/// loads without it: one team's broken VirtualService must never take down
/// another team's routes. Leaving a resource out can break another that used
/// it, which is then rejected in the next round, until a round is clean.
pub fn load_objects(objects: &[serde_json::Value], opts: &Options) -> Partial {
    let mut left_out = std::collections::BTreeSet::new();
    let mut rejected = Vec::new();
    loop {
        let mut diags = Vec::new();
        let kept = objects
            .iter()
            .filter(|o| parse::identity(o).is_none_or(|id| !left_out.contains(&id)))
            .map(|o| ("", o.clone()));
        let resources = parse::parse_values(kept, &mut diags);
        let snapshot = translate::translate(resources, opts, &mut diags);
        let (errors, warnings): (Vec<_>, Vec<_>) = diags
            .into_iter()
            .partition(|d| d.severity != Severity::Warning);
        let mut progress = false;
        for e in errors.iter().filter(|e| e.severity == Severity::Error) {
            if let Some(id) = &e.resource {
                progress |= left_out.insert(id.clone());
            }
        }
        // A refusal is reported once, by the round that publishes.
        rejected.retain(|d: &Diagnostic| d.severity == Severity::Error);
        rejected.extend(errors);
        // An error that names no resource cannot be isolated; it is reported
        // with the rest rather than looping.
        if !progress {
            return Partial {
                snapshot,
                rejected,
                warnings,
            };
        }
    }
}

#[cfg(test)]
mod tests;
