//! Opaque TCP through Envoy to the echo backend, two ways: a plain `tcp_proxy`
//! (no TLS, no tunnel: the lightest thing a proxy can do with bytes), and an
//! HBONE server terminating mTLS and HTTP/2 CONNECT, as ztunnel's inbound does
//! and as the waypoint does for a TCP Service port: the like-for-like row.

use std::net::SocketAddr;
use std::path::Path;

fn backend(backend: SocketAddr) -> String {
    format!(
        r#"  clusters:
  - name: echo
    type: STATIC
    load_assignment:
      cluster_name: echo
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: {}, port_value: {}}}}}}}
"#,
        backend.ip(),
        backend.port()
    )
}

pub fn proxy(addr: SocketAddr, to: SocketAddr) -> String {
    format!(
        r#"static_resources:
  listeners:
  - name: tcp
    address: {{socket_address: {{address: {ip}, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: echo
{clusters}"#,
        ip = addr.ip(),
        port = addr.port(),
        clusters = backend(to)
    )
}

/// `certs` holds `cert-chain.pem`, `key.pem` and `root-cert.pem` from the
/// bench's CA, so the bench's HBONE client trusts Envoy as it trusts the
/// waypoint, and Envoy asks for the client's certificate as the waypoint does.
pub fn hbone(addr: SocketAddr, to: SocketAddr, certs: &Path) -> String {
    format!(
        "static_resources:\n  listeners:\n{}{}",
        hbone_listener(addr, certs, "echo"),
        backend(to)
    )
}

/// A listener terminating HBONE (mTLS 1.3 asking for the client's certificate,
/// HTTP/2 `CONNECT`) and handing each tunnel's bytes to `cluster`: ztunnel's
/// inbound, and the front of Envoy as a waypoint.
pub fn hbone_listener(addr: SocketAddr, certs: &Path, cluster: &str) -> String {
    let certs = certs.display();
    format!(
        r#"  - name: hbone
    address: {{socket_address: {{address: {ip}, port_value: {port}}}}}
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_params: {{tls_minimum_protocol_version: TLSv1_3, tls_maximum_protocol_version: TLSv1_3}}
            alpn_protocols: [h2]
            tls_certificates:
            - certificate_chain: {{filename: {certs}/cert-chain.pem}}
              private_key: {{filename: {certs}/key.pem}}
            validation_context:
              trusted_ca: {{filename: {certs}/root-cert.pem}}
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: hbone
          codec_type: HTTP2
          http2_protocol_options: {{allow_connect: true}}
          upgrade_configs: [{{upgrade_type: CONNECT}}]
          route_config:
            virtual_hosts:
            - name: tunnels
              domains: ["*"]
              routes:
              - match: {{connect_matcher: {{}}}}
                route:
                  cluster: {cluster}
                  upgrade_configs: [{{upgrade_type: CONNECT, connect_config: {{}}}}]
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
"#,
        ip = addr.ip(),
        port = addr.port(),
    )
}
