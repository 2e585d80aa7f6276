//! `waypoint generate`: the waypoint Gateway for a namespace, as `istioctl
//! waypoint generate` prints Istio's; with `--standalone`, also everything the
//! controller would create for it, for GitOps without a controller.

use super::CmdResult;
use crate::controller::render::{self, Settings};
use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// The Gateway's name (and its service account's, unless annotated).
    #[arg(long, default_value = "waypoint")]
    pub name: String,
    #[arg(long, short = 'n', default_value = "default")]
    pub namespace: String,
    /// What traffic the waypoint takes: `istio.io/waypoint-for`.
    #[arg(long = "for", value_parser = ["service", "workload", "all", "none"])]
    pub waypoint_for: Option<String>,
    /// Also print the ServiceAccount, Deployment and Service (and the
    /// PodDisruptionBudget and autoscaler, with replicas to spare) the
    /// controller would create.
    #[arg(long)]
    pub standalone: bool,
    #[arg(long, default_value_t = Settings::default().image)]
    pub image: String,
    #[arg(long, default_value_t = 1)]
    pub replicas: u32,
    /// With more than `--replicas`: an autoscaler on CPU up to this many.
    #[arg(long)]
    pub max_replicas: Option<u32>,
    /// Istio's root namespace, where the waypoint reads the mesh config.
    #[arg(long, default_value_t = Settings::default().root_namespace)]
    pub root_namespace: String,
}

pub fn generate(args: GenerateArgs) -> CmdResult {
    let mut docs = vec![render::gateway(
        &args.namespace,
        &args.name,
        args.waypoint_for.as_deref(),
    )];
    if args.standalone {
        // Read back like any Gateway, so that what is printed is what the
        // controller would deploy for it.
        let (waypoint, _) = crate::controller::gateway::read(&docs[0])
            .map_err(|e| format!("the generated Gateway is invalid: {}", e.message))?;
        let settings = Settings {
            image: args.image,
            replicas: args.replicas,
            max_replicas: args.max_replicas,
            root_namespace: args.root_namespace,
            ..Settings::default()
        };
        docs.extend(render::render(&waypoint, &settings));
    }
    for doc in docs {
        print!("---\n{}", serde_yaml_ng::to_string(&doc)?);
    }
    Ok(ExitCode::SUCCESS)
}
