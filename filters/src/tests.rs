use super::*;
use crate::testing::SnapshotBuilder;
use std::net::Ipv4Addr;

fn ip(last: u8) -> std::net::IpAddr {
    Ipv4Addr::new(10, 0, 0, last).into()
}

#[test]
fn endpoints_resolve_target_ports_and_subsets() {
    let mut b = SnapshotBuilder::new();
    let svc = b.service("reviews", ip(100), 9080);
    b.endpoint(svc, ip(1), 8080, &[("version", "v1")]);
    b.endpoint(svc, ip(2), 8081, &[("version", "v2")]);
    let v2 = b.subset(svc, "v2", &[("version", "v2")]);
    let snap = b.build();
    let svc = snap.service(svc);

    let all = endpoints(svc, None, 9080);
    assert_eq!(
        all,
        vec![
            (EndpointIdx(0), SocketAddr::new(ip(1), 8080)),
            (EndpointIdx(1), SocketAddr::new(ip(2), 8081)),
        ]
    );
    assert_eq!(
        endpoints(svc, Some(v2), 9080),
        vec![(EndpointIdx(1), SocketAddr::new(ip(2), 8081))]
    );
    // A port the service does not have, or an unknown subset: nothing.
    assert!(endpoints(svc, None, 80).is_empty());
    assert!(endpoints(svc, Some(7), 9080).is_empty());
}

#[test]
fn request_view_reads_host_header_then_authority() {
    let m = http::Method::GET;
    let mut h = http::HeaderMap::new();
    let uri: http::Uri = "http://from-uri:81/a/b?x=1".parse().unwrap();
    let v = RequestView::new(&m, &uri, &h, 9080);
    assert_eq!(
        (v.path, v.query, v.host, v.scheme),
        ("/a/b", Some("x=1"), Some("from-uri:81"), "http")
    );
    h.insert("host", "from-header".parse().unwrap());
    let v = RequestView::new(&m, &uri, &h, 9080);
    assert_eq!(v.host, Some("from-header"));
    let origin_form: http::Uri = "/only/path".parse().unwrap();
    let v = RequestView::new(&m, &origin_form, &h, 9080);
    assert_eq!((v.path, v.query, v.scheme), ("/only/path", None, "http"));
}

#[test]
fn flags_print_envoy_short_names() {
    assert_eq!(ResponseFlag::default().as_str(), "-");
    assert_eq!(ResponseFlag::NoRouteFound.to_string(), "NR");
    assert_eq!(ResponseFlag::NoHealthyUpstream.as_str(), "UH");
    assert_eq!(ResponseFlag::UpstreamRetryLimitExceeded.as_str(), "URX");
    assert_eq!(ResponseFlag::NoClusterFound.as_str(), "NC");
}
