//! The part of the benchmark's world every waypoint bench needs: three HTTP echo
//! pods with the seed routing, a CA with the waypoint's and the client's
//! certificates, and the release waypoint binary started on them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use waypoint::echo::Echo;
use waypoint::identity::{load_cert_dir, DevCa, SpiffeId};
pub use waypoint::testing::ports::free_addr;
use waypoint::testing::{pods_yaml, Pod, PRODUCTPAGE};

pub use waypoint::testing::PRODUCTPAGE_VIP;

pub struct Seed {
    pub dir: tempfile::TempDir,
    _backends: Vec<Echo>,
    /// `(version, address)` of each backend, for the peer's config.
    pub endpoints: Vec<(&'static str, SocketAddr)>,
    /// The manifests directory: the seed routing and its pods.
    pub config: PathBuf,
    pub client_tls: Arc<rustls::ClientConfig>,
    /// The waypoint's certificate files, which Envoy's HBONE server uses too.
    pub waypoint_certs: PathBuf,
}

/// A running waypoint binary, stopped when dropped.
pub struct Waypoint {
    child: Child,
    /// Run under a profiler, whose process group gets the signal.
    wrapped: bool,
    pub http: SocketAddr,
    pub hbone: SocketAddr,
}

impl Waypoint {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Both listeners accept.
    pub async fn ready(&self) {
        wait_listening(self.http).await;
        wait_listening(self.hbone).await;
    }
}

impl Drop for Waypoint {
    fn drop(&mut self) {
        // SIGINT first, so that the waypoint exits on its own: a profiler under
        // it, or a build instrumented for PGO (benches/pgo.sh), writes its data
        // only then. Under a wrapper the signal goes to the wrapper's group
        // (heaptrack takes a few seconds after the waypoint ends).
        let target = match self.wrapped {
            true => format!("-{}", self.child.id()),
            false => self.child.id().to_string(),
        };
        let _ = Command::new("kill").args(["-INT", "--", &target]).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `name` from the environment, parsed, else `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The bench's own runtime: one thread for its clients and backends, so the
/// proxies under test have the other core.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

pub async fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "nothing listening on {addr}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Seed {
    pub async fn start() -> Seed {
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
        Seed {
            waypoint_certs: dir.path().join("wp"),
            config,
            dir,
            _backends: backends,
            endpoints,
            client_tls,
        }
    }

    /// `waypoint run` on the manifests in `config` with `workers` threads and
    /// `extra` flags; not yet listening when this returns (see `ready`).
    pub fn spawn(&self, config: &Path, workers: usize, extra: &[&str]) -> Waypoint {
        self.spawn_under(&[], config, workers, extra)
    }

    /// As `spawn`, run by `wrapper` (a profiler and its flags) when not empty;
    /// the pid is then the wrapper's.
    pub fn spawn_under(
        &self,
        wrapper: &[&str],
        config: &Path,
        workers: usize,
        extra: &[&str],
    ) -> Waypoint {
        let (http, hbone, admin) = (free_addr(), free_addr(), free_addr());
        // WAYPOINT_BIN: another build (say, the commit before) to compare with.
        let bin = std::env::var("WAYPOINT_BIN");
        let bin = bin.as_deref().unwrap_or(env!("CARGO_BIN_EXE_waypoint"));
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(bin);
                // Its own group, so one signal reaches the waypoint under it.
                std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
                cmd
            }
            None => Command::new(bin),
        };
        let child = cmd
            .arg("run")
            .arg("--config-dir")
            .arg(config)
            .arg("--cert-dir")
            .arg(&self.waypoint_certs)
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
        Waypoint {
            child,
            wrapped: !wrapper.is_empty(),
            http,
            hbone,
        }
    }
}
