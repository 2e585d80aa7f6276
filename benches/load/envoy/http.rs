//! The seed routing as Envoy config: a header-matched route, then
//! `weighted_clusters` 90/10, `ROUND_ROBIN` within each version. Over HTTP/1.1
//! for the seed rows; over HTTP/2 both sides for the gRPC rows.

use std::fmt::Write;
use std::net::SocketAddr;

/// Which protocol the listener and the clusters speak.
#[derive(Clone, Copy, PartialEq)]
pub enum Codec {
    Http1,
    /// HTTP/2 with prior knowledge downstream and h2c upstream, as gRPC needs.
    Http2,
}

fn cluster(name: &str, codec: Codec, endpoints: &[(&str, SocketAddr)]) -> String {
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
    let h2 = if codec == Codec::Http2 {
        H2_UPSTREAM
    } else {
        ""
    };
    format!(
        "  - name: {name}\n    type: STATIC\n    lb_policy: ROUND_ROBIN{h2}\n    load_assignment:\n      cluster_name: {name}\n      endpoints:\n      - lb_endpoints:{eps}\n"
    )
}

const H2_UPSTREAM: &str = r#"
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}"#;

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
    type: STATIC{H2_UPSTREAM}
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

/// The seed routing, as an HTTP connection manager's `route_config`.
const SEED_ROUTES: &str = r#"          route_config:
            virtual_hosts:
            - name: seed
              domains: ["*"]
              routes:
              - match: {prefix: "/", headers: [{name: version, string_match: {exact: v2}}]}
                route: {cluster: v2}
              - match: {prefix: "/"}
                route: {weighted_clusters: {clusters: [{name: v1, weight: 90}, {name: v2, weight: 10}]}}"#;

/// Envoy as Istio builds a waypoint: HBONE (mTLS 1.3 with the client's
/// certificate, HTTP/2 `CONNECT`) terminated by one connection manager, each
/// tunnel handed to an internal listener whose connection manager routes the
/// HTTP/1.1 inside it (`main_internal`, as istiod names it). `certs` as for
/// [`super::tcp::hbone`].
pub fn waypoint(
    addr: SocketAddr,
    endpoints: &[(&str, SocketAddr)],
    certs: &std::path::Path,
) -> String {
    format!(
        r#"bootstrap_extensions:
- name: envoy.bootstrap.internal_listener
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.bootstrap.internal_listener.v3.InternalListener
static_resources:
  listeners:
{hbone}  - name: main_internal
    internal_listener: {{}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: inbound
{SEED_ROUTES}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
  - name: main_internal
    load_assignment:
      cluster_name: main_internal
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{envoy_internal_address: {{server_listener_name: main_internal}}}}}}
{v1}{v2}"#,
        hbone = super::tcp::hbone_listener(addr, certs, "main_internal"),
        v1 = cluster("v1", Codec::Http1, endpoints),
        v2 = cluster("v2", Codec::Http1, endpoints),
    )
}

/// With `traces`, every request is traced (a server span, and a client span
/// per upstream try, as ours) to that OTLP/gRPC collector.
pub fn config(
    addr: SocketAddr,
    codec: Codec,
    endpoints: &[(&str, SocketAddr)],
    traces: Option<SocketAddr>,
) -> String {
    let (hcm_tracing, otlp_cluster) = traces.map(tracing).unwrap_or_default();
    let hcm_codec = match codec {
        Codec::Http1 => "",
        Codec::Http2 => "\n          codec_type: HTTP2\n          http2_protocol_options: {}",
    };
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
          stat_prefix: bench{hcm_codec}{hcm_tracing}
{SEED_ROUTES}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
  clusters:
{v1}{v2}{otlp_cluster}"#,
        ip = addr.ip(),
        port = addr.port(),
        v1 = cluster("v1", codec, endpoints),
        v2 = cluster("v2", codec, endpoints),
    )
}
