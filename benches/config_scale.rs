//! Translation at scale: a generated world of N Services (each with two Pods,
//! a DestinationRule with two subsets and a VirtualService with a header
//! route and a 90/10 split, 100 Services to a namespace) written to a
//! directory and loaded as `waypoint run` and `waypoint check` load it
//! (`load_dir`: read, parse, translate), then rendered as `waypoint check`
//! renders it. Each size runs in a child process of its own, so the peak
//! memory printed (VmHWM) is that size's alone.
//!
//! `cargo bench -p waypoint-config --bench config_scale` (sizes: 1000, 10000,
//! 50000; `CONFIG_SCALE_SIZES=1000,10000` to choose).

use std::time::Instant;
use waypoint_config::{load_dir, routing_table, Options};

const PER_NAMESPACE: usize = 100;

fn world(n: usize) -> String {
    let mut out = String::with_capacity(n * 1500);
    for i in 0..n {
        let ns = format!("ns-{:04}", i / PER_NAMESPACE);
        let name = format!("svc-{i:05}");
        let (a, b, c) = ((i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff);
        out += &format!(
            r#"---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec:
  clusterIP: 10.{a}.{b}.{c}
  ports: [{{name: http, port: 9080, targetPort: 8080}}]
  selector: {{app: {name}}}
"#
        );
        for (pod, version) in [(0, "v1"), (1, "v2")] {
            let ip = format!(
                "172.{}.{}.{}",
                16 + ((i * 2 + pod) >> 16) % 16,
                ((i * 2 + pod) >> 8) & 0xff,
                (i * 2 + pod) & 0xff
            );
            out += &format!(
                r#"---
apiVersion: v1
kind: Pod
metadata: {{name: {name}-{version}, namespace: {ns}, labels: {{app: {name}, version: {version}}}}}
spec: {{serviceAccountName: {name}, containers: [{{name: app, ports: [{{containerPort: 8080}}]}}]}}
status: {{podIP: {ip}, phase: Running}}
"#
            );
        }
        out += &format!(
            r#"---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}, namespace: {ns}}}
spec:
  host: {name}
  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {ns}}}
spec:
  hosts: [{name}]
  http:
  - match: [{{headers: {{end-user: {{exact: jason}}}}}}]
    route: [{{destination: {{host: {name}, subset: v2}}}}]
  - route:
    - {{destination: {{host: {name}, subset: v1}}, weight: 90}}
    - {{destination: {{host: {name}, subset: v2}}, weight: 10}}
"#
        );
    }
    out
}

/// Peak and current resident memory of this process, in MB.
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (kb("VmHWM:"), kb("VmRSS:"))
}

/// One size, in this process: prints `n parse+translate check-render peak-MB`.
fn child(n: usize) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("world.yaml"), world(n)).expect("the world is written");
    let (before, _) = memory();
    let t = Instant::now();
    let loaded = load_dir(dir.path(), &Options::default()).expect("the generated world loads");
    let load = t.elapsed();
    assert_eq!(loaded.snapshot.services.len(), n);
    let t = Instant::now();
    let table = routing_table(&loaded.snapshot);
    let render = t.elapsed();
    let (peak, now) = memory();
    println!(
        "{n} {:.3} {:.3} {peak:.0} {now:.0} {before:.0} {}",
        load.as_secs_f64(),
        render.as_secs_f64(),
        table.len()
    );
}

fn main() {
    if let Ok(n) = std::env::var("CONFIG_SCALE_CHILD") {
        child(n.parse().expect("a size"));
        return;
    }
    let sizes: Vec<usize> = std::env::var("CONFIG_SCALE_SIZES")
        .unwrap_or_else(|_| "1000,10000,50000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("sizes are numbers"))
        .collect();
    let me = std::env::current_exe().expect("own path");
    println!("| services | load (read + parse + translate) | check render | peak RSS | RSS after | RSS before loading |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for n in sizes {
        let out = std::process::Command::new(&me)
            .env("CONFIG_SCALE_CHILD", n.to_string())
            .output()
            .expect("the child runs");
        let line = String::from_utf8_lossy(&out.stdout);
        let f: Vec<&str> = line.split_whitespace().collect();
        if !out.status.success() || f.len() < 6 {
            eprintln!("{n}: {}", String::from_utf8_lossy(&out.stderr));
            continue;
        }
        println!(
            "| {n} | {} s | {} s | {} MB | {} MB | {} MB |",
            f[1], f[2], f[3], f[4], f[5]
        );
    }
}
