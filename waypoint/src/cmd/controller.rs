//! `waypoint controller`: deploys a waypoint for each Gateway of our class and
//! writes its status (see `controller::reconcile`).

use super::CmdResult;
use crate::controller::reconcile::{self, Context};
use crate::controller::render::Settings;
use crate::kube::lease::Lease;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct ControllerArgs {
    /// A kubeconfig for running outside a cluster (else in-cluster credentials,
    /// KUBECONFIG or ~/.kube/config).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The waypoint image the Deployments run.
    #[arg(long, env = "WAYPOINT_IMAGE", default_value_t = Settings::default().image)]
    pub image: String,
    #[arg(long, default_value_t = 1)]
    pub replicas: u32,
    /// With more than `--replicas`: a CPU autoscaler up to this many.
    #[arg(long)]
    pub max_replicas: Option<u32>,
    /// `CA_ADDRESS` for the waypoints.
    #[arg(long, default_value_t = Settings::default().ca_address)]
    pub ca_address: String,
    #[arg(long, env = "WAYPOINT_CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Istio's root namespace: the waypoints' `--root-namespace`, and where
    /// each gets its RoleBinding to read the mesh config (ConfigMap `istio`).
    #[arg(long, env = "WAYPOINT_ROOT_NAMESPACE", default_value_t = Settings::default().root_namespace)]
    pub root_namespace: String,
    /// Where the Lease that elects the one acting replica lives.
    #[arg(long, env = "POD_NAMESPACE", default_value = "pingora-waypoint-system")]
    pub lease_namespace: String,
    /// Seconds the Lease holds without renewal (another replica takes over
    /// after that); renewed every third of it.
    #[arg(long, default_value_t = 15)]
    pub lease_seconds: u64,
}

pub fn controller(args: ControllerArgs) -> CmdResult {
    let rt = super::runtime(Some(2))?;
    rt.block_on(async move {
        let client = crate::kube::client_for(args.kubeconfig.as_deref()).await?;
        log::info!(
            "controller: deploying waypoints for Gateways of class {}",
            crate::controller::CLASS_NAME
        );
        let lease = Lease {
            client: client.clone(),
            namespace: args.lease_namespace,
            name: "pingora-waypoint-controller".into(),
            identity: std::env::var("POD_NAME")
                .unwrap_or_else(|_| format!("controller-{}", std::process::id())),
            duration: Duration::from_secs(args.lease_seconds.max(1)),
        };
        let ctx = Arc::new(Context {
            client,
            settings: Settings {
                image: args.image,
                replicas: args.replicas,
                max_replicas: args.max_replicas,
                ca_address: args.ca_address,
                root_namespace: args.root_namespace,
                ..Settings::default()
            },
            cluster_domain: args.cluster_domain,
        });
        // Replicas stand by; only the Lease's holder applies and writes status.
        lease
            .while_leading("controller", || reconcile::run(ctx.clone()))
            .await;
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
