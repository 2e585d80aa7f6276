//! Endpoint changes on served Services, one at a time, as Kubernetes writes
//! them: a pod turned unready (its EndpointSlice rewritten with
//! `ready: false`), or a new pod (the Pod, then the EndpointSlice listing it).
//! Each is timed from just before the write to the moment the waypoint's
//! `/clusters` shows it, and costed in the waypoint's CPU time.

use super::cluster::{self, Ep, Served, POD_PORT};
use super::waypoint::{proc, Waypoint};
use serde_json::Value;
use std::time::{Duration, Instant};
use waypoint::testing::kube_api::KubeApi;

/// How long one change may take to show before it counts as missed.
const LIMIT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Unready,
    NewPod,
}

/// What the API server holds of the served Services, so each change rewrites
/// an EndpointSlice as the controller would.
pub struct Changes {
    served: Vec<Served>,
    /// The served Services as the cluster was built, for [`Changes::undo`].
    built: Vec<Served>,
    unready: usize,
    added: usize,
}

/// One change to write: its objects, the endpoint it concerns, and whether
/// `/clusters` should list that endpoint once the change is live.
struct Change {
    objects: Vec<Value>,
    needle: String,
    listed: bool,
}

impl Changes {
    pub fn new(served: Vec<Served>) -> Changes {
        Changes {
            built: served.clone(),
            served,
            unready: 0,
            added: 0,
        }
    }

    /// Every served endpoint as `/clusters` prints it.
    pub fn needles(&self) -> Vec<String> {
        self.served
            .iter()
            .flat_map(|s| s.endpoints.iter().filter(|e| e.ready))
            .map(|e| needle(&e.ip))
            .collect()
    }

    /// Puts the served Services back as they were built: the Pods the changes
    /// added are deleted and every EndpointSlice is written again, so what is
    /// measured next sees the served part of the cluster as the first starts did.
    pub fn undo(&mut self, api: &KubeApi) {
        for (now, built) in self.served.iter().zip(&self.built) {
            for ep in &now.endpoints[built.endpoints.len()..] {
                api.delete("pods", &now.namespace, &ep.pod);
            }
            api.apply(cluster::slice(
                &built.namespace,
                &built.name,
                &built.endpoints,
            ));
        }
        self.served = self.built.clone();
    }

    /// Writes the next change of `kind` and returns without waiting.
    pub fn write(&mut self, api: &KubeApi, kind: Kind) {
        api.apply_all(self.next(kind).objects);
    }

    fn next(&mut self, kind: Kind) -> Change {
        match kind {
            Kind::Unready => {
                // A different Service each time, its first ready pod.
                let n = self.served.len();
                let svc = &mut self.served[self.unready % n];
                self.unready += 1;
                let ep = svc
                    .endpoints
                    .iter_mut()
                    .find(|e| e.ready)
                    .expect("a ready endpoint left");
                ep.ready = false;
                let needle = needle(&ep.ip);
                Change {
                    objects: vec![cluster::slice(&svc.namespace, &svc.name, &svc.endpoints)],
                    needle,
                    listed: false,
                }
            }
            Kind::NewPod => {
                let k = self.added;
                self.added += 1;
                let n = self.served.len();
                let svc = &mut self.served[(k * 7 + 3) % n];
                let ip = format!("10.200.{}.{}", k >> 8, k & 255);
                let name = format!("{}-7d9f8b6c5-n{k:04}", svc.name);
                let uid = format!("00000000-0000-4000-8000-new{k:09}");
                let pod = cluster::pod(&svc.namespace, &svc.name, &name, &ip, "v1", &uid);
                svc.endpoints.push(Ep {
                    pod: name,
                    ip: ip.clone(),
                    ready: true,
                });
                Change {
                    objects: vec![
                        pod,
                        cluster::slice(&svc.namespace, &svc.name, &svc.endpoints),
                    ],
                    needle: needle(&ip),
                    listed: true,
                }
            }
        }
    }
}

fn needle(ip: &str) -> String {
    format!("::{ip}:{POD_PORT}::")
}

/// What one run of changes measured.
#[derive(Default)]
pub struct Measured {
    /// Write → live, ms, per kind.
    pub unready_ms: Vec<f64>,
    pub new_pod_ms: Vec<f64>,
    /// Waypoint CPU per change, ms (idle time subtracted), schedstat and stat.
    pub cpu_ms: Vec<f64>,
    pub stat_cpu_ms: f64,
    /// `waypoint_config_build_seconds` over all the changes: rebuilds, mean ms.
    pub rebuilds_per_change: f64,
    pub build_ms: f64,
    /// `waypoint_config_endpoint_update_seconds`: endpoint updates (only the
    /// concerned Services translated) per change, mean ms.
    pub updates_per_change: f64,
    pub update_ms: f64,
    pub missed: usize,
    pub idle_cpu_ms_per_s: f64,
}

/// `each` changes of both kinds, alternating, timed (polling); then `each` of
/// both again, costed (no polling until the waypoint had time to apply them).
pub async fn measure(
    api: &KubeApi,
    wp: &Waypoint,
    changes: &mut Changes,
    each: usize,
    debounce: Duration,
) -> Measured {
    let mut m = Measured::default();
    let (sum0, count0) = wp.builds().await;
    let (usum0, ucount0) = wp.updates().await;
    for _ in 0..each {
        for kind in [Kind::Unready, Kind::NewPod] {
            let change = changes.next(kind);
            match time_one(api, wp, change).await {
                Some(ms) if kind == Kind::Unready => m.unready_ms.push(ms),
                Some(ms) => m.new_pod_ms.push(ms),
                None => m.missed += 1,
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // What the waypoint spends doing nothing (bookmarks, timers), to subtract.
    let pid = wp.pid();
    let (c0, t0) = (proc::cpu_ms(pid), Instant::now());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_per_ms = (proc::cpu_ms(pid) - c0) / t0.elapsed().as_secs_f64() / 1000.0;
    m.idle_cpu_ms_per_s = idle_per_ms * 1000.0;
    let window = debounce + Duration::from_millis(150);
    let stat0 = proc::stat_cpu_ms(pid);
    let mut idle_total = 0.0;
    for _ in 0..each {
        for kind in [Kind::Unready, Kind::NewPod] {
            let change = changes.next(kind);
            let (c0, t0) = (proc::cpu_ms(pid), Instant::now());
            api.apply_all(change.objects);
            tokio::time::sleep(window).await;
            let (c1, spent) = (proc::cpu_ms(pid), t0.elapsed().as_secs_f64() * 1000.0);
            idle_total += idle_per_ms * spent;
            m.cpu_ms.push(c1 - c0 - idle_per_ms * spent);
            // Read only now, so polling costs nothing above; a change not live
            // yet was not fully costed.
            if wp.clusters().await.contains(&change.needle) != change.listed {
                m.missed += 1;
            }
        }
    }
    m.stat_cpu_ms = (proc::stat_cpu_ms(pid) - stat0 - idle_total) / (2 * each) as f64;
    let (sum1, count1) = wp.builds().await;
    let rebuilds = count1 - count0;
    m.rebuilds_per_change = rebuilds / (4 * each) as f64;
    m.build_ms = (sum1 - sum0) * 1000.0 / rebuilds.max(1.0);
    let (usum1, ucount1) = wp.updates().await;
    let updates = ucount1 - ucount0;
    m.updates_per_change = updates / (4 * each) as f64;
    m.update_ms = (usum1 - usum0) * 1000.0 / updates.max(1.0);
    m
}

/// Writes one change and waits until `/clusters` shows it. Between looks it
/// polls the (small) generation metric every millisecond and reads the
/// (large) `/clusters` only when a new generation is in.
async fn time_one(api: &KubeApi, wp: &Waypoint, change: Change) -> Option<f64> {
    let mut generation = wp.metric("waypoint_config_generation").await;
    let t0 = Instant::now();
    api.apply_all(change.objects);
    while t0.elapsed() < LIMIT {
        let now = wp.metric("waypoint_config_generation").await;
        if now != generation {
            let at = t0.elapsed();
            if wp.clusters().await.contains(&change.needle) == change.listed {
                return Some(at.as_secs_f64() * 1000.0);
            }
            generation = now;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    None
}
