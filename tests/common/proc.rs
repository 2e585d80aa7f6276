//! The waypoint as a child process, on free loopback ports.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};
pub use waypoint::testing::ports::free_addr;

pub struct WaypointProc {
    child: Child,
    pub hbone: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    /// Istio's metrics port (15020 in a pod).
    pub metrics: SocketAddr,
    log: tempfile::NamedTempFile,
    out: tempfile::NamedTempFile,
}

/// The waypoint under test: this build's, or WAYPOINT_BIN, so that the suite can
/// run against the binary that ships (`benches/pgo.sh build`).
pub fn bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("WAYPOINT_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_waypoint").into())
    })
}

/// Runs a one-shot `waypoint` command (`check`, `client`).
pub fn run(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().unwrap()
}

impl WaypointProc {
    pub async fn start(config_dir: &Path, cert_dir: &Path) -> WaypointProc {
        Self::start_with(config_dir, cert_dir, &[]).await
    }

    /// With extra `waypoint run` flags.
    pub async fn start_with(config_dir: &Path, cert_dir: &Path, extra: &[&str]) -> WaypointProc {
        Self::start_with_env(config_dir, cert_dir, extra, &[]).await
    }

    /// With extra flags and environment variables.
    pub async fn start_with_env(
        config_dir: &Path,
        cert_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> WaypointProc {
        Self::start_dir(config_dir, Some(cert_dir), extra, env).await
    }

    /// With certificates from a CA (`extra` names it) instead of `--cert-dir`;
    /// returns once the listeners are up, which is before the first certificate.
    pub async fn start_ca(config_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> WaypointProc {
        Self::start_dir(config_dir, None, extra, env).await
    }

    async fn start_dir(
        config_dir: &Path,
        cert_dir: Option<&Path>,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> WaypointProc {
        let dir = config_dir.display().to_string();
        let mut args = vec!["--config-dir", dir.as_str()];
        args.extend_from_slice(extra);
        let mut p = Self::spawn(cert_dir, &args, env);
        p.wait_ready().await;
        p
    }

    /// Reading its config from a (fake) Kubernetes API server through
    /// `kubeconfig`, as the waypoint of Gateway `gateway` (NAMESPACE/NAME); returns
    /// once `/healthz/ready` says the first sync is done.
    pub async fn start_kube(
        kubeconfig: &Path,
        gateway: &str,
        cert_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> WaypointProc {
        let p = Self::start_kube_unready(kubeconfig, gateway, cert_dir, extra, env).await;
        p.until_ready().await;
        p
    }

    /// Waits (up to 20 s) for `/healthz/ready` to answer 200.
    pub async fn until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.ready().await {
            assert!(Instant::now() < deadline, "never ready:\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// As [`start_kube`](Self::start_kube), returning once the listeners are up.
    pub async fn start_kube_unready(
        kubeconfig: &Path,
        gateway: &str,
        cert_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> WaypointProc {
        let kc = kubeconfig.display().to_string();
        let mut args = vec![
            "--config-source",
            "kubernetes",
            "--kubeconfig",
            kc.as_str(),
            "--gateway",
            gateway,
        ];
        args.extend_from_slice(extra);
        let mut p = Self::spawn(Some(cert_dir), &args, env);
        p.wait_ready().await;
        p
    }

    fn spawn(cert_dir: Option<&Path>, args: &[&str], env: &[(&str, &str)]) -> WaypointProc {
        let (hbone, http, admin, metrics) = (free_addr(), free_addr(), free_addr(), free_addr());
        let log = tempfile::NamedTempFile::new().unwrap();
        let out = tempfile::NamedTempFile::new().unwrap();
        let cert_dir = cert_dir.map(|d| vec!["--cert-dir".as_ref(), d.as_os_str()]);
        let child = Command::new(bin())
            .arg("run")
            .args(cert_dir.unwrap_or_default())
            .args(["--hbone-addr", &hbone.to_string()])
            .args(["--http-addr", &http.to_string()])
            .args(["--admin-addr", &admin.to_string()])
            .args(["--metrics-addr", &metrics.to_string()])
            .args(["--workers", "2"])
            .args(args)
            .env("RUST_LOG", "info,access=debug")
            // kube's client is built without proxy support and refuses to start
            // when one is set; the API server here is on loopback anyway.
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            // Would turn on the CA client (and conflict with --cert-dir).
            .env_remove("CA_ADDRESS")
            .envs(env.iter().copied())
            .stdout(out.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        WaypointProc {
            child,
            hbone,
            http,
            admin,
            metrics,
            log,
            out,
        }
    }

    /// Whether `/healthz/ready` answers 200.
    pub async fn ready(&self) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut s) = tokio::net::TcpStream::connect(self.admin).await else {
            return false;
        };
        let req = b"GET /healthz/ready HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n";
        if s.write_all(req).await.is_err() {
            return false;
        }
        let mut out = String::new();
        let _ = s.read_to_string(&mut out).await;
        out.starts_with("HTTP/1.1 200")
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("waypoint exited with {status}:\n{}", self.logs());
            }
            if tokio::net::TcpStream::connect(self.hbone).await.is_ok()
                && tokio::net::TcpStream::connect(self.http).await.is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "waypoint not ready:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (briefly) for the waypoint to log `needle`: the client may see a
    /// refusal before the server has written why.
    pub async fn log_contains(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.logs().contains(needle) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Sends SIGTERM, as Kubernetes does to stop a pod.
    pub fn signal_term(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit on its own.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "waypoint did not exit:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process's resident memory, in KiB.
    pub fn rss_kib(&self) -> i64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// What the waypoint wrote on stdout: its access log.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.out.path()).unwrap_or_default()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for WaypointProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- waypoint log ---\n{}", self.logs());
        }
    }
}
