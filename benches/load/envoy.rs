//! Envoy as the yardstick: the same routing (header match, then a 90/10 weighted
//! split, round robin within each version) expressed as a static Envoy config.

use super::world::{free_addr, wait_listening, World};
use std::fmt::Write;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

pub struct Envoy {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Envoy {
    /// `None` when no Envoy binary is installed. With `traces`, every request is
    /// traced (a server span, and a client span per upstream try, as ours) to
    /// that OTLP/gRPC collector.
    pub async fn start(world: &World, workers: usize, traces: Option<SocketAddr>) -> Option<Envoy> {
        let bin = std::env::var("ENVOY").unwrap_or_else(|_| "envoy".into());
        let dir = tempfile::tempdir().unwrap();
        let addr = free_addr();
        let path = dir.path().join("envoy.yaml");
        std::fs::write(&path, config(addr, &world.endpoints, traces)).unwrap();
        let child = Command::new(bin)
            .arg("-c")
            .arg(&path)
            .args(["--concurrency", &workers.to_string()])
            .args(["--log-level", "error"])
            .arg("--disable-hot-restart")
            .stdout(Stdio::null())
            .spawn()
            .ok()?;
        wait_listening(addr).await;
        Some(Envoy {
            child,
            addr,
            _dir: dir,
        })
    }
}

impl Envoy {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cluster(name: &str, endpoints: &[(&str, SocketAddr)]) -> String {
    let mut eps = String::new();
    for (_, a) in endpoints.iter().filter(|(v, _)| *v == name) {
        write!(
            eps,
            "\n        - endpoint: {{address: {{socket_address: {{address: {}, port_value: {}}}}}}}",
            a.ip(),
            a.port()
        )
        .unwrap();
    }
    format!(
        "  - name: {name}\n    type: STATIC\n    lb_policy: ROUND_ROBIN\n    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:{eps}\n"
    )
}

fn tracing(collector: SocketAddr) -> (String, String) {
    let hcm = r#"
          tracing:
            random_sampling: {value: 100}
            spawn_upstream_span: true
            provider:
              name: envoy.tracers.opentelemetry
              typed_config:
                "@type": type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig
                grpc_service: {envoy_grpc: {cluster_name: otlp}}
                service_name: envoy"#;
    let cluster = format!(
        r#"  - name: otlp
    type: STATIC
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    load_assignment:
      cluster_name: otlp
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: {}, port_value: {}}}}}}}
"#,
        collector.ip(),
        collector.port()
    );
    (hcm.to_string(), cluster)
}

fn config(
    addr: SocketAddr,
    endpoints: &[(&str, SocketAddr)],
    traces: Option<SocketAddr>,
) -> String {
    let (hcm_tracing, otlp_cluster) = traces.map(tracing).unwrap_or_default();
    format!(
        r#"static_resources:
  listeners:
  - name: http
    address: {{socket_address: {{address: {ip}, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench{hcm_tracing}
          route_config:
            virtual_hosts:
            - name: productpage
              domains: ["*"]
              routes:
              - match: {{prefix: "/", headers: [{{name: version, string_match: {{exact: v2}}}}]}}
                route: {{cluster: v2}}
              - match: {{prefix: "/"}}
                route: {{weighted_clusters: {{clusters: [{{name: v1, weight: 90}}, {{name: v2, weight: 10}}]}}}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
{v1}{v2}{otlp_cluster}"#,
        ip = addr.ip(),
        port = addr.port(),
        v1 = cluster("v1", endpoints),
        v2 = cluster("v2", endpoints),
    )
}
