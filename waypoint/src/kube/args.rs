//! Choosing the config source, and the Kubernetes source's flags.

use super::GatewayRef;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConfigSource {
    Kubernetes,
    Dir,
}

/// Where a pod finds its service-account token: present means in a cluster.
const IN_CLUSTER_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

#[derive(clap::Args, Clone, Debug)]
pub struct SourceArgs {
    /// Where config comes from: the Kubernetes API, or --config-dir. Default:
    /// kubernetes when running in a pod, else dir.
    #[arg(long, env = "WAYPOINT_CONFIG_SOURCE", value_enum)]
    pub config_source: Option<ConfigSource>,
    /// A kubeconfig for running outside a cluster (else KUBECONFIG, ~/.kube/config
    /// or the pod's service account).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// This waypoint's Gateway, NAMESPACE/NAME. Default: the pod's
    /// `gateway.networking.k8s.io/gateway-name` label and namespace, given
    /// through the downward API as GATEWAY_NAME and POD_NAMESPACE.
    #[arg(long, env = "WAYPOINT_GATEWAY")]
    pub gateway: Option<GatewayRef>,
    /// Milliseconds a change waits for more before the whole config is built.
    /// Endpoint changes (Pods, EndpointSlices) are applied at once,
    /// translating only the Services they concern.
    #[arg(long, env = "WAYPOINT_CONFIG_DEBOUNCE_MS", default_value_t = 100)]
    pub config_debounce_ms: u64,
}

impl SourceArgs {
    pub fn source(&self) -> ConfigSource {
        self.config_source.unwrap_or_else(|| {
            let in_pod = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
                && std::path::Path::new(IN_CLUSTER_TOKEN).exists();
            if in_pod {
                ConfigSource::Kubernetes
            } else {
                ConfigSource::Dir
            }
        })
    }

    pub fn gateway(&self) -> Result<GatewayRef, String> {
        if let Some(g) = &self.gateway {
            return Ok(g.clone());
        }
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        match (env("POD_NAMESPACE"), env("GATEWAY_NAME")) {
            (Some(namespace), Some(name)) => Ok(GatewayRef { namespace, name }),
            _ => Err(
                "the Kubernetes source needs this waypoint's Gateway: --gateway NAMESPACE/NAME \
                 (or GATEWAY_NAME and POD_NAMESPACE from the downward API)"
                    .into(),
            ),
        }
    }

    /// This replica's name for leader election: the pod's name (HOSTNAME in a
    /// pod), else the host's with the process id.
    pub fn identity(&self) -> String {
        std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| format!("waypoint-{}", std::process::id()))
    }

    pub fn debounce(&self) -> Duration {
        Duration::from_millis(self.config_debounce_ms)
    }

    /// A client for the API server this process should talk to.
    pub async fn client(&self) -> Result<kube::Client, Box<dyn std::error::Error>> {
        client_for(self.kubeconfig.as_deref()).await
    }
}

/// A client from `kubeconfig`, else in-cluster credentials, `KUBECONFIG` or
/// `~/.kube/config`.
pub async fn client_for(
    kubeconfig: Option<&std::path::Path>,
) -> Result<kube::Client, Box<dyn std::error::Error>> {
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("reading kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &Default::default())
                .await
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| format!("no Kubernetes credentials: {e}"))?,
    };
    Ok(kube::Client::try_from(config)?)
}
