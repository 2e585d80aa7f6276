//! What one access-log line costs the request that writes it: an HBONE request's
//! entry as `logging` fills it, serialized and appended to the shared buffer
//! (the writer thread writes to /dev/null meanwhile). See benches/README.md.

use criterion::{criterion_group, criterion_main, Criterion};
use prometheus::IntCounter;
use std::borrow::Cow;
use std::hint::black_box;
use waypoint::access_log::{AccessLog, Entry};
use waypoint::identity::SpiffeId;
use waypoint::proxy::ClusterName;

fn line(c: &mut Criterion) {
    let log = AccessLog::to_file(
        std::path::Path::new("/dev/null"),
        IntCounter::new("dropped", "dropped").unwrap(),
    )
    .unwrap();
    let source: SpiffeId = "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
        .parse()
        .unwrap();
    let started = jiff::Timestamp::now();
    let upstream: std::net::SocketAddr = "10.0.0.7:9080".parse().unwrap();
    let client: std::net::IpAddr = "10.0.1.9".parse().unwrap();
    c.bench_function("access_log_line", |b| {
        b.iter(|| {
            let entry = Entry {
                start_time: started,
                method: Some("GET"),
                path: Some("/productpage?u=normal"),
                protocol: Some("HTTP/1.1"),
                response_code: 200,
                grpc_status: None,
                response_flags: Cow::Borrowed("-"),
                response_code_details: None,
                bytes_received: 0,
                bytes_sent: 1024,
                duration: 1,
                upstream_service_time: Some(0),
                x_forwarded_for: None,
                user_agent: Some("load/1.0"),
                request_id: Some("9b1f2c3a-4d5e-4f60-8a7b-1c2d3e4f5a6b"),
                authority: Some("productpage.default.svc.cluster.local:9080"),
                upstream_host: Some(upstream),
                upstream_cluster: Some(ClusterName {
                    port: 9080,
                    subset: "v1",
                    host: "productpage.default.svc.cluster.local",
                }),
                downstream_remote_address: Some(client),
                route_name: Some("default/productpage"),
                source_principal: Some(&source),
                destination_principal: Some(
                    "spiffe://cluster.local/ns/default/sa/bookinfo-productpage",
                ),
            };
            log.write(black_box(&entry));
        })
    });
}

criterion_group!(benches, line);
criterion_main!(benches);
