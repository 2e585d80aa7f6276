//! The benchmark's world: three HTTP echo pods with the seed routing, three gRPC
//! pods and a TCP echo pod with theirs, certificates, and the waypoint binary
//! running it all.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use waypoint::echo::Echo;
use waypoint::identity::{load_cert_dir, DevCa, SpiffeId};
use waypoint::testing::{pods_yaml, Pod, PRODUCTPAGE};

pub use waypoint::testing::PRODUCTPAGE_VIP;

pub struct World {
    _dir: tempfile::TempDir,
    _backends: Vec<Echo>,
    pub grpc: super::grpc::Backends,
    pub tcp: super::tcp::EchoServer,
    /// `(version, address)` of each backend, for the peer's config.
    pub endpoints: Vec<(&'static str, SocketAddr)>,
    waypoint: Child,
    /// The same waypoint with the access log off, for the telemetry's cost.
    quiet: Child,
    pub quiet_http: SocketAddr,
    pub quiet_hbone: SocketAddr,
    /// The same waypoint with no per-request telemetry at all.
    bare: Child,
    pub bare_http: SocketAddr,
    /// The quiet waypoint with `TEN_RULES` attached to productpage, for the
    /// policy's cost per request.
    authz: Child,
    pub authz_http: SocketAddr,
    pub authz_hbone: SocketAddr,
    /// The same waypoint tracing every request to `collector`.
    traced: Child,
    pub traced_http: SocketAddr,
    pub collector: super::otlp::Collector,
    pub waypoint_http: SocketAddr,
    pub waypoint_hbone: SocketAddr,
    pub client_tls: Arc<rustls::ClientConfig>,
    /// The waypoint's certificate files, which Envoy's HBONE server uses too.
    pub waypoint_certs: PathBuf,
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

pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

impl World {
    pub async fn start(workers: usize) -> World {
        let dir = tempfile::tempdir().unwrap();
        let pods = [
            ("productpage-v1-a", "v1"),
            ("productpage-v1-b", "v1"),
            ("productpage-v2", "v2"),
        ];
        let mut backends = Vec::new();
        let mut endpoints = Vec::new();
        for (name, version) in pods {
            let echo = Echo::start("127.0.0.1:0".parse().unwrap(), name)
                .await
                .unwrap();
            endpoints.push((version, echo.addr));
            backends.push(echo);
        }
        let specs: Vec<Pod<'_>> = pods
            .iter()
            .zip(&backends)
            .map(|((name, version), echo)| Pod {
                name,
                app: "productpage",
                version,
                port: echo.addr.port(),
            })
            .collect();
        let config = dir.path().join("config");
        std::fs::create_dir_all(&config).unwrap();
        std::fs::write(config.join("pods.yaml"), pods_yaml(&specs)).unwrap();
        std::fs::write(config.join("routing.yaml"), PRODUCTPAGE).unwrap();
        let grpc = super::grpc::Backends::start().await;
        std::fs::write(config.join("grpc-pods.yaml"), &grpc.pods).unwrap();
        std::fs::write(config.join("grpc.yaml"), super::grpc::MANIFESTS).unwrap();
        let tcp = super::tcp::EchoServer::start().await;
        std::fs::write(config.join("tcp-pods.yaml"), tcp.pod()).unwrap();
        std::fs::write(config.join("tcp.yaml"), super::tcp::MANIFESTS).unwrap();

        // A copy of the whole config plus the policy, for the authz waypoint alone.
        let config_authz = dir.path().join("config-authz");
        std::fs::create_dir_all(&config_authz).unwrap();
        for entry in std::fs::read_dir(&config).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, config_authz.join(path.file_name().unwrap())).unwrap();
        }
        std::fs::write(config_authz.join("authz.yaml"), TEN_RULES).unwrap();

        let ca = DevCa::new("bench CA").unwrap();
        let td = "cluster.local";
        ca.write_cert_dir(
            &dir.path().join("wp"),
            &SpiffeId::new(td, "default", "waypoint"),
        )
        .unwrap();
        ca.write_cert_dir(
            &dir.path().join("client"),
            &SpiffeId::new(td, "default", "client"),
        )
        .unwrap();
        let client = load_cert_dir(&dir.path().join("client")).unwrap();
        let client_tls = waypoint::hbone::tls::client_config(&client, None).unwrap();

        let spawn_in = |config: &std::path::Path, extra: &[&str]| {
            let (http, hbone, admin) = (free_addr(), free_addr(), free_addr());
            // WAYPOINT_BIN runs another build (say, the last commit's) in this
            // build's harness, for a before/after in one sitting.
            let bin = std::env::var_os("WAYPOINT_BIN");
            let bin = bin
                .as_deref()
                .unwrap_or(env!("CARGO_BIN_EXE_waypoint").as_ref());
            let child = Command::new(bin)
                .arg("run")
                .arg("--config-dir")
                .arg(config)
                .arg("--cert-dir")
                .arg(dir.path().join("wp"))
                .args(["--http-addr", &http.to_string()])
                .args(["--hbone-addr", &hbone.to_string()])
                .args(["--admin-addr", &admin.to_string()])
                .args(["--metrics-addr", &free_addr().to_string()])
                .args(["--workers", &workers.to_string()])
                .args(extra)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            (child, http, hbone)
        };
        let spawn = |extra: &[&str]| spawn_in(&config, extra);
        let (waypoint, http, hbone) = spawn(&[]);
        let (quiet, quiet_http, quiet_hbone) = spawn(&["--access-log", "false"]);
        let (authz, authz_http, authz_hbone) = spawn_in(&config_authz, &["--access-log", "false"]);
        let (bare, bare_http, _) = spawn(&["--access-log", "false", "--request-metrics", "false"]);
        let collector = super::otlp::Collector::start().await;
        let (traced, traced_http, _) = spawn(&["--otlp-endpoint", &collector.endpoint()]);
        wait_listening(quiet_http).await;
        wait_listening(traced_http).await;
        wait_listening(bare_http).await;
        wait_listening(http).await;
        wait_listening(hbone).await;
        wait_listening(quiet_hbone).await;
        wait_listening(authz_http).await;
        wait_listening(authz_hbone).await;
        World {
            waypoint_certs: dir.path().join("wp"),
            _dir: dir,
            _backends: backends,
            grpc,
            tcp,
            endpoints,
            waypoint,
            quiet,
            quiet_http,
            quiet_hbone,
            authz,
            authz_http,
            authz_hbone,
            bare,
            bare_http,
            traced,
            traced_http,
            collector,
            waypoint_http: http,
            waypoint_hbone: hbone,
            client_tls,
        }
    }
}

impl World {
    pub fn waypoint_pid(&self) -> u32 {
        self.waypoint.id()
    }

    pub fn quiet_pid(&self) -> u32 {
        self.quiet.id()
    }

    pub fn authz_pid(&self) -> u32 {
        self.authz.id()
    }

    pub fn bare_pid(&self) -> u32 {
        self.bare.id()
    }

    pub fn traced_pid(&self) -> u32 {
        self.traced.id()
    }
}

pub async fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "nothing listening on {addr}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for child in [
            &mut self.waypoint,
            &mut self.quiet,
            &mut self.authz,
            &mut self.bare,
            &mut self.traced,
        ] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
