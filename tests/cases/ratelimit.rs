//! Local rate limiting from an Envoy Gateway BackendTrafficPolicy: one bucket per
//! rule and client key, shared across connections, 429 with Envoy's headers.

use crate::common::world::Pod;
use crate::common::{connect, h, Certs, WaypointProc, World};
use waypoint::client::Tunnel;

const VIP: &str = "10.96.0.50:8080";

const MANIFESTS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: quota, namespace: default}
spec:
  clusterIP: 10.96.0.50
  ports: [{name: http, port: 8080, targetPort: http}]
  selector: {app: quota}
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: quota, namespace: default}
spec:
  targetRefs: [{group: "", kind: Service, name: quota}]
  rateLimit:
    type: Local
    local:
      rules:
      - clientSelectors: [{headers: [{name: x-user, type: Distinct}]}]
        limit: {requests: 5, unit: Hour}
      - limit: {requests: 30, unit: Hour}
"#;

async fn statuses(
    t: &mut Tunnel,
    n: usize,
    headers: &[(String, String)],
) -> (usize, usize, Option<waypoint::client::Reply>) {
    let (mut ok, mut limited, mut last_429) = (0, 0, None);
    for _ in 0..n {
        let r = t.get("http://quota/", headers).await.unwrap();
        match r.status.as_u16() {
            200 => ok += 1,
            429 => {
                limited += 1;
                last_429 = Some(r);
            }
            s => panic!("unexpected {s}"),
        }
    }
    (ok, limited, last_429)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_per_rule_and_key_shared_across_connections() {
    let world = World::new(&[Pod("quota-1", "quota", "v1")], MANIFESTS).await;
    let certs = Certs::new();
    let wp = WaypointProc::start(world.dir(), &certs.waypoint_dir).await;
    // Two HBONE connections, as two client nodes' ztunnels would open.
    let (c1, c2) = (
        connect(&wp, &certs.client()).await,
        connect(&wp, &certs.client()).await,
    );
    let mut t1 = Tunnel::open(&c1, VIP).await.unwrap();
    let mut t2 = Tunnel::open(&c2, VIP).await.unwrap();

    let (ok, limited, reply) = statuses(&mut t1, 10, &h("x-user", "alice")).await;
    assert_eq!((ok, limited), (5, 5), "alice's bucket holds 5");
    let reply = reply.unwrap();
    assert_eq!(reply.header("x-ratelimit-limit"), Some("5, 5;w=3600"));
    assert_eq!(reply.header("x-ratelimit-remaining"), Some("0"));
    let retry_after: u64 = reply.header("retry-after").unwrap().parse().unwrap();
    assert!(
        (700..=720).contains(&retry_after),
        "one token per 720 s: {retry_after}"
    );
    // The same key on another connection shares the bucket; another key does not.
    assert_eq!(statuses(&mut t2, 3, &h("x-user", "alice")).await.0, 0);
    assert_eq!(statuses(&mut t2, 10, &h("x-user", "bob")).await.0, 5);

    // Requests without x-user only meet the 30-per-hour rule, of which alice and
    // bob already used 10; the rest is split across the two connections.
    let a = statuses(&mut t1, 15, &[]).await.0;
    let b = statuses(&mut t2, 15, &[]).await.0;
    assert_eq!(a + b, 20);
    assert_eq!(
        world.requests("quota-1"),
        30,
        "429s never reach the backend"
    );
}
