//! The benchmark's world: the seed (three HTTP echo pods with the seed routing,
//! certificates), three gRPC pods and a TCP echo pod with theirs, and the
//! waypoint binary running it all, five ways.

use super::seed::{Seed, Waypoint};
use std::net::SocketAddr;
use std::sync::Arc;

pub struct World {
    pub grpc: super::grpc::Backends,
    pub tcp: super::tcp::EchoServer,
    /// `(version, address)` of each backend, for the peer's config.
    pub endpoints: Vec<(&'static str, SocketAddr)>,
    waypoint: Waypoint,
    /// The same waypoint with the access log off, for the telemetry's cost.
    quiet: Waypoint,
    pub quiet_http: SocketAddr,
    pub quiet_hbone: SocketAddr,
    /// The same waypoint with no per-request telemetry at all.
    bare: Waypoint,
    pub bare_http: SocketAddr,
    /// The quiet waypoint with `TEN_RULES` attached to productpage, for the
    /// policy's cost per request.
    authz: Waypoint,
    pub authz_http: SocketAddr,
    pub authz_hbone: SocketAddr,
    /// The same waypoint tracing every request to `collector`.
    traced: Waypoint,
    pub traced_http: SocketAddr,
    pub collector: super::otlp::Collector,
    pub waypoint_http: SocketAddr,
    pub waypoint_hbone: SocketAddr,
    pub client_tls: Arc<rustls::ClientConfig>,
    /// The waypoint's certificate files, which Envoy's HBONE server uses too.
    pub waypoint_certs: std::path::PathBuf,
    /// Last, so the waypoints stop before their files and backends go.
    _seed: Seed,
}

/// Ten ALLOW rules where only the last admits the bench's requests, so every
/// request tries all ten: the worst case for a policy of this size. The last
/// rule's second source is "no peer identity", the plaintext listener's, so the
/// plaintext rows are allowed too; over HBONE its first source matches.
const TEN_RULES: &str = r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ten-rules, namespace: default}
spec:
  targetRefs: [{kind: Service, group: "", name: productpage}]
  action: ALLOW
  rules:
  - from: [{source: {principals: ["cluster.local/ns/team-0/sa/client"]}}]
    to: [{operation: {methods: [GET, POST], paths: ["/team-0/*"]}}]
  - from: [{source: {principals: ["cluster.local/ns/team-1/sa/client"]}}]
    to: [{operation: {methods: [GET, POST], paths: ["/team-1/*"]}}]
  - from: [{source: {principals: ["cluster.local/ns/team-2/sa/client"]}}]
    to: [{operation: {methods: [GET, POST], paths: ["/team-2/*"]}}]
  - from: [{source: {principals: ["cluster.local/ns/team-3/sa/client"]}}]
    to: [{operation: {methods: [GET, POST], paths: ["/team-3/*"]}}]
  - from: [{source: {principals: ["cluster.local/ns/team-4/sa/client"]}}]
    to: [{operation: {methods: [GET, POST], paths: ["/team-4/*"]}}]
  - from: [{source: {principals: ["cluster.local/ns/team-5/sa/client"]}}]
    to: [{operation: {methods: [GET, POST], paths: ["/team-5/*"]}}]
  - from: [{source: {principals: ["cluster.local/ns/team-6/sa/client"]}}]
    to: [{operation: {methods: [GET, POST], paths: ["/team-6/*"]}}]
  - from: [{source: {principals: ["cluster.local/ns/team-7/sa/client"]}}]
    to: [{operation: {methods: [GET, POST], paths: ["/team-7/*"]}}]
  - from: [{source: {principals: ["cluster.local/ns/team-8/sa/client"]}}]
    to: [{operation: {methods: [GET, POST], paths: ["/team-8/*"]}}]
  - from:
    - {source: {principals: ["cluster.local/ns/default/sa/client"]}}
    - {source: {notPrincipals: ["*"]}}
    to: [{operation: {methods: [GET], paths: ["/productpage"]}}]
"#;

impl World {
    pub async fn start(workers: usize) -> World {
        let seed = Seed::start().await;
        let config = seed.config.clone();
        let grpc = super::grpc::Backends::start().await;
        std::fs::write(config.join("grpc-pods.yaml"), &grpc.pods).unwrap();
        std::fs::write(config.join("grpc.yaml"), super::grpc::MANIFESTS).unwrap();
        let tcp = super::tcp::EchoServer::start().await;
        std::fs::write(config.join("tcp-pods.yaml"), tcp.pod()).unwrap();
        std::fs::write(config.join("tcp.yaml"), super::tcp::MANIFESTS).unwrap();
        std::fs::write(config.join("opaque.yaml"), super::http::OPAQUE_MANIFEST).unwrap();

        // A copy of the whole config plus the policy, for the authz waypoint alone.
        let config_authz = seed.dir.path().join("config-authz");
        std::fs::create_dir_all(&config_authz).unwrap();
        for entry in std::fs::read_dir(&config).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, config_authz.join(path.file_name().unwrap())).unwrap();
        }
        std::fs::write(config_authz.join("authz.yaml"), TEN_RULES).unwrap();

        let spawn = |extra: &[&str]| seed.spawn(&config, workers, extra);
        let waypoint = spawn(&[]);
        let quiet = spawn(&["--access-log", "false"]);
        let authz = seed.spawn(&config_authz, workers, &["--access-log", "false"]);
        let bare = spawn(&["--access-log", "false", "--request-metrics", "false"]);
        let collector = super::otlp::Collector::start().await;
        let traced = spawn(&["--otlp-endpoint", &collector.endpoint()]);
        for w in [&quiet, &traced, &bare, &waypoint, &authz] {
            w.ready().await;
        }
        World {
            waypoint_certs: seed.waypoint_certs.clone(),
            client_tls: seed.client_tls.clone(),
            endpoints: seed.endpoints.clone(),
            grpc,
            tcp,
            waypoint_http: waypoint.http,
            waypoint_hbone: waypoint.hbone,
            waypoint,
            quiet_http: quiet.http,
            quiet_hbone: quiet.hbone,
            quiet,
            authz_http: authz.http,
            authz_hbone: authz.hbone,
            authz,
            bare_http: bare.http,
            bare,
            traced_http: traced.http,
            traced,
            collector,
            _seed: seed,
        }
    }
}

impl World {
    pub fn waypoint_pid(&self) -> u32 {
        self.waypoint.pid()
    }

    pub fn quiet_pid(&self) -> u32 {
        self.quiet.pid()
    }

    pub fn authz_pid(&self) -> u32 {
        self.authz.pid()
    }

    pub fn bare_pid(&self) -> u32 {
        self.bare.pid()
    }

    pub fn traced_pid(&self) -> u32 {
        self.traced.pid()
    }
}
