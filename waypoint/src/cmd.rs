//! The `waypoint` subcommands.

pub mod check;
pub mod client;
pub mod controller;
pub mod demo;
pub mod generate;
pub mod run;

/// A command's failure, already worded for the user.
pub type CmdResult = Result<std::process::ExitCode, Box<dyn std::error::Error>>;

/// A multi-threaded runtime with `workers` threads (one per CPU by default).
pub fn runtime(workers: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        b.worker_threads(n.max(1));
    }
    b.enable_all().build()
}

/// Naming domains, shared by `run` and `check`.
#[derive(clap::Args, Clone)]
pub struct Domains {
    /// Trust domain of SPIFFE identities.
    #[arg(long, env = "WAYPOINT_TRUST_DOMAIN", default_value = "cluster.local")]
    pub trust_domain: String,
    /// Kubernetes cluster domain, for service FQDNs.
    #[arg(long, env = "WAYPOINT_CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Istio's root namespace (mesh config `rootNamespace`), for
    /// AuthorizationPolicies that apply to every waypoint.
    #[arg(long, env = "WAYPOINT_ROOT_NAMESPACE", default_value = "istio-system")]
    pub root_namespace: String,
}

impl Domains {
    pub fn options(&self) -> waypoint_config::Options {
        waypoint_config::Options {
            cluster_domain: self.cluster_domain.clone(),
            trust_domain: self.trust_domain.clone(),
            root_namespace: self.root_namespace.clone(),
        }
    }
}
