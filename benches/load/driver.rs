//! Closed-loop load: `conns` keep-alive HTTP/1.1 connections (or HBONE tunnels),
//! each sending the next request when the last answer arrives.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use waypoint::hbone::client::HboneClient;

#[derive(Clone)]
pub enum Scenario {
    Plaintext(SocketAddr),
    Hbone {
        addr: SocketAddr,
        tls: Arc<rustls::ClientConfig>,
    },
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
}

impl Report {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    pub fn cpu_us_per_request(&self) -> Option<f64> {
        Some(self.cpu_ms? * 1000.0 / self.requests.max(1) as f64)
    }

    pub fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i] as f64 / 1000.0
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn open(scenario: &Scenario, hbone: Option<&HboneClient>) -> Sender {
    let (sender, conn) = match scenario {
        Scenario::Plaintext(addr) => {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            tcp.set_nodelay(true).unwrap();
            hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                .await
                .unwrap()
        }
        Scenario::Hbone { .. } => {
            let stream = hbone
                .unwrap()
                .open(super::world::PRODUCTPAGE_VIP)
                .await
                .unwrap();
            let (s, c) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(async move {
                let _ = c.await;
            });
            return s;
        }
    };
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

async fn one(sender: &mut Sender) -> bool {
    let req = http::Request::builder()
        .uri("/productpage")
        .header("host", "productpage:9080")
        .body(Empty::new())
        .unwrap();
    if sender.ready().await.is_err() {
        return false;
    }
    match sender.send_request(req).await {
        Ok(resp) => {
            let ok = resp.status() == 200;
            ok && resp.into_body().collect().await.is_ok()
        }
        Err(_) => false,
    }
}

pub async fn run(
    scenario: Scenario,
    name: &str,
    conns: usize,
    duration: Duration,
    pid: u32,
) -> Report {
    // One HBONE connection carries every tunnel, as one ztunnel-to-waypoint pair does.
    let hbone = match &scenario {
        Scenario::Hbone { addr, tls } => {
            Some(HboneClient::connect(*addr, tls.clone()).await.unwrap())
        }
        Scenario::Plaintext(_) => None,
    };
    let warmup = Duration::from_secs(1);
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let mut sender = open(&scenario, hbone.as_ref()).await;
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(1 << 16);
            let mut errors = 0;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let ok = one(&mut sender).await;
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
        }));
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let cpu_start = super::procstat::cpu_ms(pid);
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
    }
}

pub fn print(reports: &[Report]) {
    let envoy = reports.iter().find(|r| r.name.starts_with("envoy"));
    println!(
        "{:<31} {:>10} {:>8} {:>9} {:>9} {:>9} {:>12} {:>14} {:>8}",
        "path",
        "req/s",
        "errors",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "vs envoy",
        "cpu µs/req",
        "rss MiB"
    );
    for r in reports {
        let ratio = envoy
            .map(|e| format!("{:.2}x rps", r.rps() / e.rps()))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<31} {:>10.0} {:>8} {:>9.3} {:>9.3} {:>9.3} {:>12} {:>14.1} {:>8.1}",
            r.name,
            r.rps(),
            r.errors,
            r.percentile(0.5),
            r.percentile(0.9),
            r.percentile(0.99),
            ratio,
            r.cpu_us_per_request().unwrap_or(f64::NAN),
            r.rss_mib.unwrap_or(f64::NAN)
        );
    }
    if let Some(e) = envoy {
        for r in reports.iter().filter(|r| !r.name.starts_with("envoy")) {
            let cpu = r
                .cpu_us_per_request()
                .zip(e.cpu_us_per_request())
                .map(|(a, b)| format!(", CPU per request {:.2}x", a / b))
                .unwrap_or_default();
            let mem = r
                .rss_mib
                .zip(e.rss_mib)
                .map(|(a, b)| format!(", memory {:.2}x", a / b))
                .unwrap_or_default();
            println!(
                "{}: p50 latency {:.2}x envoy's, p99 {:.2}x{cpu}{mem}",
                r.name.split_whitespace().collect::<Vec<_>>().join(" "),
                r.percentile(0.5) / e.percentile(0.5),
                r.percentile(0.99) / e.percentile(0.99)
            );
        }
    }
}
