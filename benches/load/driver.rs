//! Closed-loop load and its report: each caller makes the next call when the
//! last answer arrives, for a warm-up second and then the measured window.

use std::future::Future;
use std::time::{Duration, Instant};

/// One closed loop: an HTTP/1.1 connection, a gRPC stream slot on a shared
/// HTTP/2 connection, or a TCP connection doing ping-pong.
pub trait Caller: Send + 'static {
    /// One call; `false` when it failed.
    fn call(&mut self) -> impl Future<Output = bool> + Send;
}

pub struct Report {
    pub name: String,
    pub requests: usize,
    pub errors: usize,
    pub seconds: f64,
    /// Sorted latencies in microseconds.
    pub latencies: Vec<u32>,
    /// Proxy CPU time over the measured window, and its resident memory after it.
    pub cpu_ms: Option<f64>,
    pub rss_mib: Option<f64>,
    /// The bench process's own CPU over the window (clients and backends, on
    /// one runtime thread): near 100% of a core, it, not the proxy, sets the pace.
    pub bench_cpu_ms: Option<f64>,
}

impl Report {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    pub fn cpu_us_per_request(&self) -> Option<f64> {
        Some(self.cpu_ms? * 1000.0 / self.requests.max(1) as f64)
    }

    pub fn bench_cpu_percent(&self) -> Option<f64> {
        Some(self.bench_cpu_ms? / (self.seconds * 10.0))
    }

    pub fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i] as f64 / 1000.0
    }
}

/// Runs every caller in its own task and reads `pid`'s CPU over the window.
pub async fn closed_loop<C: Caller>(
    name: &str,
    callers: Vec<C>,
    duration: Duration,
    pid: u32,
) -> Report {
    let warmup = Duration::from_secs(1);
    let measure_from = Instant::now() + warmup;
    let end = measure_from + duration;
    let tasks: Vec<_> = callers
        .into_iter()
        .map(|mut caller| {
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(1 << 16);
                let mut errors = 0;
                loop {
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    let ok = caller.call().await;
                    if t0 >= measure_from {
                        if ok {
                            lat.push(t0.elapsed().as_micros() as u32);
                        } else {
                            errors += 1;
                        }
                    }
                    if !ok {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    tokio::time::sleep_until(measure_from.into()).await;
    let cpu_start = super::procstat::cpu_ms(pid);
    let bench_start = super::procstat::cpu_ms(std::process::id());
    let mut latencies = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        latencies.extend(l);
        errors += e;
    }
    let cpu_ms = super::procstat::cpu_ms(pid)
        .zip(cpu_start)
        .map(|(end, start)| end - start);
    let bench_cpu_ms = super::procstat::cpu_ms(std::process::id())
        .zip(bench_start)
        .map(|(end, start)| end - start);
    let rss_mib = super::procstat::rss_mib(pid);
    latencies.sort_unstable();
    Report {
        name: name.to_string(),
        requests: latencies.len(),
        errors,
        seconds: duration.as_secs_f64(),
        latencies,
        cpu_ms,
        rss_mib,
        bench_cpu_ms,
    }
}

/// A table of `reports` in `unit`s (`req`, `call`, `rt`), the ratio column
/// against the first row, then one line per `(ours, yardstick)` pair of row
/// names, so a row compared with something other than the first says so.
pub fn print(unit: &str, reports: &[Report], pairs: &[(&str, &str)]) {
    let first = reports.first();
    let (rate, cpu) = (format!("{unit}/s"), format!("cpu µs/{unit}"));
    println!(
        "{:<34} {:>10} {:>8} {:>9} {:>9} {:>9} {:>10} {:>14} {:>8} {:>10}",
        "path",
        rate,
        "errors",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "vs row 1",
        cpu,
        "rss MiB",
        "bench cpu"
    );
    for r in reports {
        let ratio = first
            .map(|e| format!("{:.2}x", r.rps() / e.rps()))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<34} {:>10.0} {:>8} {:>9.3} {:>9.3} {:>9.3} {:>10} {:>14.1} {:>8.1} {:>9.0}%",
            r.name,
            r.rps(),
            r.errors,
            r.percentile(0.5),
            r.percentile(0.9),
            r.percentile(0.99),
            ratio,
            r.cpu_us_per_request().unwrap_or(f64::NAN),
            r.rss_mib.unwrap_or(f64::NAN),
            r.bench_cpu_percent().unwrap_or(f64::NAN)
        );
    }
    let find = |name: &str| reports.iter().find(|r| r.name == name);
    for (ours, theirs) in pairs {
        let (Some(r), Some(e)) = (find(ours), find(theirs)) else {
            continue;
        };
        let cpu = r
            .cpu_us_per_request()
            .zip(e.cpu_us_per_request())
            .map(|(a, b)| format!(", CPU per {unit} {:.2}x", a / b))
            .unwrap_or_default();
        let mem = r
            .rss_mib
            .zip(e.rss_mib)
            .map(|(a, b)| format!(", memory {:.2}x", a / b))
            .unwrap_or_default();
        println!(
            "{} vs {}: {unit}/s {:.2}x, p50 {:.2}x, p99 {:.2}x{cpu}{mem}",
            squash(ours),
            squash(theirs),
            r.rps() / e.rps(),
            r.percentile(0.5) / e.percentile(0.5),
            r.percentile(0.99) / e.percentile(0.99)
        );
    }
}

/// CPU µs per `unit` that row `with` spends beyond row `without`: what a
/// feature costs, where a ratio would hide how small it is.
pub fn print_added_cpu(unit: &str, reports: &[Report], with: &str, without: &str) {
    let cpu = |name: &str| {
        reports
            .iter()
            .find(|r| r.name == name)
            .and_then(Report::cpu_us_per_request)
    };
    if let (Some(a), Some(b)) = (cpu(with), cpu(without)) {
        println!(
            "{} adds {:+.1} cpu µs/{unit} ({a:.1} vs {b:.1}) to {}",
            squash(with),
            a - b,
            squash(without)
        );
    }
}

fn squash(name: &str) -> String {
    name.split_whitespace().collect::<Vec<_>>().join(" ")
}
