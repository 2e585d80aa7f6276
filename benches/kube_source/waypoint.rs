//! The release `waypoint` binary reading the fake API server, and what the bench
//! reads of it: readiness, `/clusters`, metrics, and from /proc its memory and
//! CPU time.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use waypoint::testing::ports::free_addr;

pub struct Waypoint {
    child: Child,
    /// Run under a profiler, which must be interrupted to write its data.
    wrapped: bool,
    pub started: Instant,
    admin: SocketAddr,
    metrics: SocketAddr,
    log: tempfile::NamedTempFile,
}

impl Waypoint {
    /// `waypoint run --config-source kubernetes` with one worker; `debounce_ms`
    /// `None` keeps the default.
    pub fn spawn(kubeconfig: &Path, cert_dir: &Path, debounce_ms: Option<u64>) -> Waypoint {
        let (admin, metrics) = (free_addr(), free_addr());
        let log = tempfile::NamedTempFile::new().unwrap();
        // A profiler to run the waypoint under (`heaptrack`, `perf record -g --`);
        // the pid read from /proc is then the profiler's.
        let wrap = std::env::var("KUBE_BENCH_WRAP").unwrap_or_default();
        let wrapped = !wrap.trim().is_empty();
        let mut wrap = wrap.split_whitespace();
        let mut cmd = match wrap.next() {
            Some(program) => {
                let mut cmd = Command::new(program);
                cmd.args(wrap).arg(env!("CARGO_BIN_EXE_waypoint"));
                // Its own process group, so the waypoint under it can be signalled
                // with it.
                std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
                cmd
            }
            None => Command::new(env!("CARGO_BIN_EXE_waypoint")),
        };
        cmd.arg("run")
            .args([
                "--config-source",
                "kubernetes",
                "--gateway",
                super::cluster::GATEWAY,
            ])
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--cert-dir")
            .arg(cert_dir)
            .args(["--hbone-addr", &free_addr().to_string()])
            .args(["--admin-addr", &admin.to_string()])
            .args(["--metrics-addr", &metrics.to_string()])
            .args(["--workers", "1"])
            .args(["--access-log", "false"]);
        if let Some(ms) = debounce_ms {
            cmd.args(["--config-debounce-ms", &ms.to_string()]);
        }
        // kube's client refuses to start with a proxy set; the API server is on
        // loopback anyway.
        for var in [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            cmd.env_remove(var);
        }
        let started = Instant::now();
        let child = cmd
            .env("RUST_LOG", "warn,waypoint=info")
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        Waypoint {
            child,
            wrapped,
            started,
            admin,
            metrics,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Polls `/healthz/ready` every 2 ms; the time from spawn to its first 200.
    pub async fn wait_ready(&mut self, limit: Duration) -> Duration {
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("waypoint exited with {status}:\n{}", self.logs());
            }
            if let Some((200, _)) = get(self.metrics, "/healthz/ready").await {
                return self.started.elapsed();
            }
            assert!(
                self.started.elapsed() < limit,
                "not ready after {limit:?}:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    pub async fn clusters(&self) -> String {
        get(self.admin, "/clusters")
            .await
            .map(|(_, b)| b)
            .unwrap_or_default()
    }

    /// An unlabelled sample of `name` (0 when missing).
    pub async fn metric(&self, name: &str) -> f64 {
        let Some((_, body)) = get(self.metrics, "/stats/prometheus").await else {
            return f64::NAN;
        };
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// `waypoint_config_build_seconds` (sum, count).
    pub async fn builds(&self) -> (f64, f64) {
        (
            self.metric("waypoint_config_build_seconds_sum").await,
            self.metric("waypoint_config_build_seconds_count").await,
        )
    }

    /// `waypoint_config_endpoint_update_seconds` (sum, count).
    pub async fn updates(&self) -> (f64, f64) {
        (
            self.metric("waypoint_config_endpoint_update_seconds_sum")
                .await,
            self.metric("waypoint_config_endpoint_update_seconds_count")
                .await,
        )
    }

    /// Waits until the config generation and the objects held have not moved
    /// for `quiet` (bounded by `limit`): the waypoint has taken in what was sent.
    pub async fn settle(&self, quiet: Duration, limit: Duration) {
        let deadline = Instant::now() + limit;
        let probe = || async {
            (
                self.metric("waypoint_config_generation").await,
                self.metric("waypoint_config_objects").await,
            )
        };
        let mut last = probe().await;
        let mut since = Instant::now();
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = probe().await;
            if now != last {
                (last, since) = (now, Instant::now());
            } else if since.elapsed() >= quiet {
                return;
            }
        }
    }
}

impl Drop for Waypoint {
    fn drop(&mut self) {
        if self.wrapped {
            // SIGINT to the group: the waypoint exits, then the profiler writes
            // its data; whatever is left of the group goes after 20 s.
            let group = format!("-{}", self.child.id());
            let _ = Command::new("kill").args(["-INT", "--", &group]).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 GET on a fresh connection: (status, body).
pub async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.ok()?;
    let text = String::from_utf8_lossy(&out);
    let status = text.get(9..12)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// From /proc: what the process costs.
pub mod proc {
    fn status_kib(pid: u32, field: &str) -> f64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix(field))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(f64::NAN)
    }

    /// Resident memory now, MiB.
    pub fn rss_mib(pid: u32) -> f64 {
        status_kib(pid, "VmRSS:") / 1024.0
    }

    /// Peak resident memory (high-water mark), MiB.
    pub fn hwm_mib(pid: u32) -> f64 {
        status_kib(pid, "VmHWM:") / 1024.0
    }

    /// utime + stime from /proc/PID/stat, ms (10 ms ticks).
    pub fn stat_cpu_ms(pid: u32) -> f64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return f64::NAN;
        };
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let tick = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        };
        (tick(11) + tick(12)) * 10.0
    }

    /// CPU time of every thread, ms, from each thread's schedstat (nanoseconds on
    /// CPU): fine enough for one rebuild, which /proc/PID/stat's ticks are not.
    pub fn cpu_ms(pid: u32) -> f64 {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return f64::NAN;
        };
        let ns: u64 = tasks
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
            .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .sum();
        ns as f64 / 1e6
    }
}
