//! The Kubernetes source at cluster scale: 200 namespaces, 10,000 Services,
//! 50,000 Pods and their EndpointSlices (100 Services served by this waypoint),
//! held by the in-process fake API server and fed as lists and watch events to
//! the release `waypoint` binary. Measures the time to the first ready
//! snapshot, memory (and memory again with the unrelated part doubled), and
//! what one endpoint change costs, with the default debounce and with none.
//! Prints the figures beside the targets; asserts nothing.
//!
//! `cargo bench -p waypoint --bench kube_source` (also run by `./dev bench`).
//! Env: KUBE_BENCH_CHANGES (changes of each kind per pass, default 20);
//! KUBE_BENCH_STARTS (cold starts per cluster size, default 3);
//! KUBE_BENCH_PROFILE=SECONDS instead starts one waypoint (debounce 0) on the
//! cluster, prints its pid, waits 3 s and makes an endpoint change every 100 ms
//! for that long, for `perf record -g -p PID` to watch. KUBE_BENCH_WRAP="heaptrack"
//! (or any command prefix) runs each waypoint under it.

mod kube_source {
    pub mod change;
    pub mod cluster;
    pub mod waypoint;
}

use kube_source::change::{self, Changes, Measured};
use kube_source::cluster::{self, Cluster};
use kube_source::waypoint::{proc, Waypoint};
use std::path::Path;
use std::time::{Duration, Instant};
use waypoint::identity::{DevCa, SpiffeId};
use waypoint::testing::kube_api::{KubeApi, Verb};

/// How long a waypoint may take to become ready or take a world in.
const LIMIT: Duration = Duration::from_secs(30);

/// What one waypoint start measured.
struct Start {
    ready: Duration,
    first_build_ms: f64,
    hwm_mib: f64,
    rss_mib: f64,
    held: f64,
    /// Requests until ready: lists of Pods, of EndpointSlices, of Namespaces, of
    /// anything; and watches opened.
    lists: [usize; 4],
    watches: usize,
    /// Objects the first build translated, from the waypoint's log.
    served: String,
}

/// Starts a waypoint on `kubeconfig`, waits for `/healthz/ready` and for it to
/// settle, and reads its memory.
async fn start(
    api: &KubeApi,
    kubeconfig: &Path,
    certs: &Path,
    debounce: Option<u64>,
) -> (Waypoint, Start) {
    api.clear_requests();
    let mut wp = Waypoint::spawn(kubeconfig, certs, debounce);
    let ready = wp.wait_ready(LIMIT).await;
    let requests = api.requests();
    let lists = |resource: Option<&str>| {
        requests
            .iter()
            .filter(|r| r.verb == Verb::List)
            .filter(|r| resource.is_none() || r.resource.as_deref() == resource)
            .count()
    };
    let lists = [
        lists(Some("pods")),
        lists(Some("endpointslices.discovery.k8s.io")),
        lists(Some("namespaces")),
        lists(None),
    ];
    let watches = requests.iter().filter(|r| r.verb == Verb::Watch).count();
    let (sum, count) = wp.builds().await;
    wp.settle(Duration::from_millis(300), Duration::from_secs(5))
        .await;
    let start = Start {
        ready,
        first_build_ms: sum * 1000.0 / count.max(1.0),
        hwm_mib: proc::hwm_mib(wp.pid()),
        rss_mib: proc::rss_mib(wp.pid()),
        held: wp.metric("waypoint_config_objects").await,
        lists,
        watches,
        served: served_in_log(&wp.logs()),
    };
    (wp, start)
}

/// `n` cold starts in a row, as one sample is at the mercy of the shared
/// cores; the last waypoint is left running.
async fn starts(
    api: &KubeApi,
    kubeconfig: &Path,
    certs: &Path,
    debounce: Option<u64>,
    n: usize,
) -> (Waypoint, Vec<Start>) {
    let mut all = Vec::new();
    loop {
        let (wp, s) = start(api, kubeconfig, certs, debounce).await;
        all.push(s);
        if all.len() >= n {
            return (wp, all);
        }
    }
}

/// Time to ready over several starts: "median ms (min–max)".
fn ready_spread(starts: &[Start]) -> String {
    let ms: Vec<f64> = starts
        .iter()
        .map(|s| s.ready.as_secs_f64() * 1000.0)
        .collect();
    match ms.len() {
        1 => format!("{:.0} ms", ms[0]),
        _ => format!(
            "{:.0} ms ({:.0}–{:.0})",
            median(&ms),
            percentile(&ms, 0.0),
            percentile(&ms, 1.0)
        ),
    }
}

/// The highest of a memory figure over several starts.
fn most(starts: &[Start], f: impl Fn(&Start) -> f64) -> f64 {
    starts.iter().map(f).fold(f64::NAN, f64::max)
}

/// N from the waypoint's "first sync done for gateway G: N objects served".
fn served_in_log(log: &str) -> String {
    log.lines()
        .find_map(|l| {
            let (_, rest) = l.split_once("first sync done for gateway ")?;
            let (_, rest) = rest.split_once(": ")?;
            rest.split_whitespace().next().map(str::to_string)
        })
        .unwrap_or_else(|| "?".into())
}

/// Loads namespaces `range` into `api` a few at a time, so the bench never
/// holds the whole world as JSON values; returns what was loaded, objects aside.
fn load(api: &KubeApi, range: std::ops::Range<usize>) -> Cluster {
    let mut total = Cluster::default();
    for n in range.clone().step_by(10) {
        let mut c = cluster::build(n..(n + 10).min(range.end));
        api.apply_all(std::mem::take(&mut c.objects));
        total.served.append(&mut c.served);
        total.namespaces += c.namespaces;
        total.services += c.services;
        total.pods += c.pods;
        total.slices += c.slices;
        total.config += c.config;
    }
    total
}

fn median(v: &[f64]) -> f64 {
    percentile(v, 0.5)
}

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n => v[((n - 1) as f64 * p).round() as usize],
    }
}

fn main() {
    let each: usize = std::env::var("KUBE_BENCH_CHANGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let n_starts: usize = std::env::var("KUBE_BENCH_STARTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    match std::env::var("KUBE_BENCH_PROFILE")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(secs) => rt.block_on(profile(Duration::from_secs(secs))),
        None => rt.block_on(run(each, n_starts)),
    }
}

/// Endpoint changes for a profiler to watch: no measurement.
async fn profile(churn: Duration) {
    let dir = tempfile::tempdir().unwrap();
    let ca = DevCa::new("bench CA").unwrap();
    let certs = dir.path().join("wp");
    ca.write_cert_dir(
        &certs,
        &SpiffeId::new("cluster.local", "ns-000", "waypoint"),
    )
    .unwrap();
    let api = KubeApi::start().await;
    let kubeconfig = api.kubeconfig(dir.path());
    let mut changes = Changes::new(load(&api, 0..200).served);
    let (wp, _) = start(&api, &kubeconfig, &certs, Some(0)).await;
    eprintln!(
        "kube_source: waypoint pid {}; changes start in 3 s, for {churn:?}",
        wp.pid()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let t = Instant::now();
    let mut n = 0;
    while t.elapsed() < churn {
        let kind = [change::Kind::Unready, change::Kind::NewPod][n % 2];
        changes.write(&api, kind);
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("kube_source: {n} changes written");
}

async fn run(each: usize, n_starts: usize) {
    let bench_started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let ca = DevCa::new("bench CA").unwrap();
    let certs = dir.path().join("wp");
    ca.write_cert_dir(
        &certs,
        &SpiffeId::new("cluster.local", "ns-000", "waypoint"),
    )
    .unwrap();

    let api = KubeApi::start().await;
    let kubeconfig = api.kubeconfig(dir.path());
    let t = Instant::now();
    let world = load(&api, 0..200);
    let load_s = t.elapsed().as_secs_f64();
    let mut changes = Changes::new(world.served.clone());
    let served_endpoints = changes.needles();
    eprintln!(
        "kube_source: {} objects loaded into the fake API server in {load_s:.1}s",
        world.namespaces + world.services + world.pods + world.slices + world.config
    );

    // 1. Cold start with the default debounce, then changes on it.
    let (wp, colds) = starts(&api, &kubeconfig, &certs, None, n_starts).await;
    let cold = &colds[0];
    eprintln!(
        "kube_source: cold start ready in {}; endpoint changes, default debounce",
        ready_spread(&colds)
    );
    let debounced =
        change::measure(&api, &wp, &mut changes, each, Duration::from_millis(100)).await;
    drop(wp);

    // 2. The same with --config-debounce-ms 0.
    let (wp, cold0) = start(&api, &kubeconfig, &certs, Some(0)).await;
    eprintln!("kube_source: endpoint changes, debounce 0");
    let undebounced = change::measure(&api, &wp, &mut changes, each, Duration::ZERO).await;
    drop(wp);

    // 3. The world streamed in while the waypoint watches an empty cluster.
    let empty = KubeApi::start().await;
    let empty_kc = {
        let d = dir.path().join("empty");
        std::fs::create_dir_all(&d).unwrap();
        empty.kubeconfig(&d)
    };
    let (wp, idle) = start(&empty, &empty_kc, &certs, None).await;
    eprintln!("kube_source: streaming the world in");
    let objects = cluster::build(0..200).objects;
    let t = Instant::now();
    empty.apply_all(objects);
    let written = t.elapsed();
    let mut streamed = None;
    while t.elapsed() < LIMIT {
        if wp.metric("waypoint_config_objects").await == cold.held {
            let listed = wp.clusters().await;
            if served_endpoints.iter().all(|n| listed.contains(n.as_str())) {
                streamed = Some(t.elapsed());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    wp.settle(Duration::from_millis(300), Duration::from_secs(5))
        .await;
    let streamed_hwm = proc::hwm_mib(wp.pid());
    let streamed_rss = proc::rss_mib(wp.pid());
    drop(wp);
    drop(empty);

    // 4. The unrelated part doubled: 200 more namespaces, none served. The
    // changes above added Pods to served Services; they go first, so the
    // served part is what the first starts saw and only the unrelated part grew.
    eprintln!("kube_source: doubling the unrelated part");
    changes.undo(&api);
    let more = load(&api, 200..400);
    let (wp, doubleds) = starts(&api, &kubeconfig, &certs, None, n_starts).await;
    let doubled = &doubleds[0];
    drop(wp);

    println!(
        "\nkube_source: {} namespaces, {} Services, {} Pods, {} EndpointSlices, {} routes/policies/gateways; \
         {} Services ({} endpoints) served by {}",
        world.namespaces,
        world.services,
        world.pods,
        world.slices,
        world.config,
        world.served.len(),
        served_endpoints.len(),
        cluster::GATEWAY
    );
    println!(
        "doubled: + {} namespaces, {} Services, {} Pods, {} EndpointSlices, {} routes/policies/gateways, none served",
        more.namespaces, more.services, more.pods, more.slices, more.config
    );
    println!("waypoint: release build, --workers 1, on loopback beside the fake API server (same 2 cores)\n");
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
    let mib = |v: f64| format!("{v:.1} MiB");
    let row = |what: &str, value: String, target: &str| {
        println!("{what:<58} {value:>22}   {target}");
    };
    println!("{:<58} {:>22}   target", "", "measured");
    row(
        &format!("first ready snapshot, {n_starts} cold starts: spawn → ready"),
        ready_spread(&colds),
        "< 2 s",
    );
    row(
        "  same, --config-debounce-ms 0 (one start)",
        ms(cold0.ready),
        "< 2 s",
    );
    row("  same, doubled cluster", ready_spread(&doubleds), "< 2 s");
    row(
        "  first build (scope + translate + swap)",
        format!("{:.1} ms", cold.first_build_ms),
        "",
    );
    row(
        "  objects translated per build (all that is served)",
        cold.served.to_string(),
        "",
    );
    let [pods, slices, namespaces, all] = cold.lists;
    row(
        "  API calls until ready: lists (Pods, EndpointSlices, Namespaces)",
        format!("{all} ({pods}, {slices}, {namespaces})"),
        "",
    );
    row(
        "  API calls until ready: watches",
        cold.watches.to_string(),
        "",
    );
    row(
        "world streamed in while watching: write → all served live",
        streamed.map(ms).unwrap_or_else(|| "timed out".into()),
        "",
    );
    row(
        "  of which the fake API server storing it (one lock)",
        ms(written),
        "",
    );
    row(
        "  after the write returned",
        streamed
            .map(|s| ms(s.saturating_sub(written)))
            .unwrap_or_else(|| "-".into()),
        "",
    );
    row("objects held after sync", format!("{:.0}", cold.held), "");
    row("  doubled cluster", format!("{:.0}", doubled.held), "");
    row(
        "peak RSS (VmHWM), cold start (highest of the starts)",
        mib(most(&colds, |s| s.hwm_mib)),
        "< 100 MB",
    );
    row(
        "RSS after sync",
        mib(most(&colds, |s| s.rss_mib)),
        "< 100 MB",
    );
    row(
        "peak RSS, doubled cluster",
        mib(most(&doubleds, |s| s.hwm_mib)),
        "flat",
    );
    row(
        "RSS after sync, doubled cluster",
        mib(most(&doubleds, |s| s.rss_mib)),
        "flat",
    );
    row("peak RSS, world streamed in", mib(streamed_hwm), "< 100 MB");
    row("RSS after sync, streamed", mib(streamed_rss), "");
    row("RSS, empty cluster (for reference)", mib(idle.rss_mib), "");
    for (name, m) in [
        ("default debounce (100 ms)", &debounced),
        ("--config-debounce-ms 0", &undebounced),
    ] {
        println!(
            "\nendpoint change, {name}: {each} of each kind timed, then {each} of each costed"
        );
        changes_rows(m, &cold.served, &row);
    }
    println!(
        "\nCPU from each thread's /proc schedstat, less the waypoint's idle rate; /proc/PID/stat's \
         10 ms ticks give the mean beside it. Whole bench: {:.0} s.",
        bench_started.elapsed().as_secs_f64()
    );
}

/// `translated`: how many objects each build translates (all served ones).
fn changes_rows(m: &Measured, translated: &str, row: &impl Fn(&str, String, &str)) {
    let lat = |v: &[f64]| {
        format!(
            "{:.1} / {:.1} / {:.1} ms",
            median(v),
            percentile(v, 0.9),
            percentile(v, 1.0)
        )
    };
    row(
        "  pod unready → gone from /clusters (p50 / p90 / max)",
        lat(&m.unready_ms),
        "< 10 ms",
    );
    row(
        "  new pod → in /clusters (p50 / p90 / max)",
        lat(&m.new_pod_ms),
        "< 10 ms",
    );
    row(
        "  whole builds per change; mean, objects translated",
        format!(
            "{:.2}; {:.1} ms, {translated}",
            m.rebuilds_per_change, m.build_ms
        ),
        "no re-translation of others",
    );
    row(
        "  endpoint updates per change; mean (one Service translated)",
        format!("{:.2}; {:.3} ms", m.updates_per_change, m.update_ms),
        "",
    );
    row(
        "  waypoint CPU per change: median (stat mean)",
        format!("{:.2} ms ({:.1} ms)", median(&m.cpu_ms), m.stat_cpu_ms),
        "",
    );
    row(
        "  idle CPU (subtracted)",
        format!("{:.2} ms/s", m.idle_cpu_ms_per_s),
        "",
    );
    if m.missed > 0 {
        row(
            "  changes not live within the limit",
            m.missed.to_string(),
            "",
        );
    }
}
