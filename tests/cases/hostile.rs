//! A mesh client as an attacker: oversized and amplified headers, header blocks
//! left unfinished, paced rapid reset, silent peers. Each is refused without
//! harming the connection's other tunnels or the process, and counted in
//! `waypoint_downstream_rejected_total{reason}`.

use super::telemetry::{scrape, value};
use crate::common::world::PRODUCTPAGE_VIP;
use crate::common::{h, tunnel, Certs, WaypointProc, World};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use waypoint::hbone::client::ClientError;

async fn rejected(wp: &WaypointProc, reason: &str) -> f64 {
    value(
        &scrape(wp.metrics).await,
        "waypoint_downstream_rejected_total",
        &[("reason", reason)],
    )
}

/// The count for `reason` once it reaches `want`, or as it is after 5 s. A
/// connection closed with GOAWAY is counted when its task sees h2's error,
/// which can be after the peer has read the GOAWAY and moved on.
async fn rejected_reaching(wp: &WaypointProc, reason: &str, want: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n = rejected(wp, reason).await;
        if n >= want || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An mTLS connection to the HBONE listener that speaks no HTTP/2 by itself.
async fn raw_tls(wp: &WaypointProc, certs: &Certs) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tls = waypoint::hbone::tls::client_config(&certs.client(), None).unwrap();
    let tcp = TcpStream::connect(wp.hbone).await.unwrap();
    let name = rustls_pki_types::ServerName::IpAddress(wp.hbone.ip().into());
    tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .unwrap()
}

/// An HTTP/2 client connection to the HBONE listener, driven in the background.
async fn h2_client(wp: &WaypointProc, certs: &Certs) -> h2::client::SendRequest<Bytes> {
    let (send, conn) = h2::client::handshake(raw_tls(wp, certs).await)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Reads until the peer closes (or the deadline passes); true if it closed.
async fn closed_within(io: &mut (impl tokio::io::AsyncRead + Unpin), limit: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, io.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

fn connect_request(authority: &str, pad: &[(String, String)]) -> Request<()> {
    let mut req = Request::builder().method(Method::CONNECT).uri(authority);
    for (k, v) in pad {
        req = req.header(k.as_str(), v.as_str());
    }
    req.body(()).unwrap()
}

fn refused_with(result: Result<waypoint::hbone::H2Stream, ClientError>) -> StatusCode {
    match result {
        Err(ClientError::Refused { status, .. }) => status,
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(_) => panic!("the CONNECT was accepted"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_connect_headers_get_431_and_other_tunnels_keep_working() {
    let world = World::productpage().await;
    let certs = Certs::new();
    let wp = WaypointProc::start(world.dir(), &certs.waypoint_dir).await;
    let client = crate::common::connect(&wp, &certs.client()).await;
    let mut open = waypoint::client::Tunnel::open(&client, PRODUCTPAGE_VIP)
        .await
        .unwrap();
    assert_eq!(
        crate::common::status(&mut open, "http://productpage:9080/").await,
        200
    );

    // 100 KiB in one header: over the 60 KiB the waypoint advertises.
    let big = client
        .open_with(PRODUCTPAGE_VIP, &[("x-pad", "a".repeat(100 * 1024))])
        .await;
    assert_eq!(
        refused_with(big),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    // 101 small headers: over Envoy's count.
    let many: Vec<(&str, String)> = (0..101).map(|i| ("x-n", i.to_string())).collect();
    let many = client.open_with(PRODUCTPAGE_VIP, &many).await;
    assert_eq!(
        refused_with(many),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    // The open tunnel and the connection are untouched.
    assert_eq!(
        crate::common::status(&mut open, "http://productpage:9080/").await,
        200
    );
    let mut fresh = waypoint::client::Tunnel::open(&client, PRODUCTPAGE_VIP)
        .await
        .unwrap();
    assert_eq!(
        crate::common::status(&mut fresh, "http://productpage:9080/").await,
        200
    );
    assert_eq!(rejected(&wp, "header_list_too_large").await, 1.0);
    assert_eq!(rejected(&wp, "too_many_headers").await, 1.0);

    // Over four times the limit h2 calls it abuse and closes the connection
    // (GOAWAY ENHANCE_YOUR_CALM); other connections are unaffected.
    let abusive = client
        .open_with(PRODUCTPAGE_VIP, &[("x-pad", "a".repeat(256 * 1024))])
        .await;
    assert!(
        matches!(abusive, Err(ClientError::H2(e)) if e.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM))
    );
    let mut other = tunnel(&wp, &certs, PRODUCTPAGE_VIP).await;
    assert_eq!(
        crate::common::status(&mut other, "http://productpage:9080/").await,
        200
    );
    assert_eq!(rejected_reaching(&wp, "h2_abuse", 1.0).await, 1.0);
}

/// A CONNECT's header block, hand-encoded: HPACK lets a sender insert a 1 KB
/// header into the decoder's table once (`insert`) and then name it with a
/// one-byte reference as often as it likes, so a few KB on the wire decode to
/// as many MB as it likes. (h2's own encoder never repeats a reference.)
fn amplified_connect(insert: bool, copies: usize) -> Vec<u8> {
    let authority = PRODUCTPAGE_VIP.as_bytes();
    // :method CONNECT and :authority, literal with the static table's names.
    let mut block = vec![0x02, 7];
    block.extend_from_slice(b"CONNECT");
    block.extend_from_slice(&[0x01, authority.len() as u8]);
    block.extend_from_slice(authority);
    if insert {
        // x-pad: 1000 bytes, literal with incremental indexing: dynamic index 62.
        block.extend_from_slice(&[0x40, 5]);
        block.extend_from_slice(b"x-pad");
        block.extend_from_slice(&[0x7f, 0xe9, 0x06]);
        block.extend(std::iter::repeat_n(b'b', 1000));
    }
    block.extend(std::iter::repeat_n(0x80 | 62, copies));
    block
}

/// The server's HEADERS frames, by stream: whether each ended the stream (a
/// refusal) or left it open (a tunnel), read until the connection closes or
/// `limit` passes.
async fn responses(
    tls: &mut (impl AsyncRead + Unpin),
    want: usize,
    limit: Duration,
) -> (std::collections::BTreeMap<u32, bool>, bool) {
    let mut seen = std::collections::BTreeMap::new();
    let deadline = tokio::time::Instant::now() + limit;
    let mut head = [0u8; 9];
    loop {
        if seen.len() >= want {
            return (seen, false);
        }
        let read = tokio::time::timeout_at(deadline, tls.read_exact(&mut head)).await;
        let Ok(Ok(_)) = read else {
            return (seen, matches!(read, Ok(Err(_))));
        };
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0; len];
        if tls.read_exact(&mut payload).await.is_err() {
            return (seen, true);
        }
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        if head[3] == 0x1 && stream != 0 {
            seen.insert(stream, head[4] & 0x1 != 0);
        }
        if head[3] == 0x7 {
            return (seen, true);
        }
    }
}

async fn h2_handshake(tls: &mut (impl AsyncWrite + Unpin)) {
    tls.write_all(PREFACE).await.unwrap();
    tls.write_all(&frame(0x4, 0, 0, &[])).await.unwrap();
    tls.write_all(&frame(0x4, 0x1, 0, &[])).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpack_amplified_connects_are_refused_within_bounded_memory() {
    let world = World::productpage().await;
    let certs = Certs::new();
    let wp = WaypointProc::start(world.dir(), &certs.waypoint_dir).await;
    let before = wp.rss_kib();

    // 300 CONNECTs of ~200 KB decoded each, in one write: each refused alone.
    let mut tls = raw_tls(&wp, &certs).await;
    h2_handshake(&mut tls).await;
    let mut burst = Vec::new();
    for i in 0..300u32 {
        let block = amplified_connect(i == 0, 200);
        burst.extend(frame(0x1, 0x4, 2 * i + 1, &block));
    }
    assert!(
        burst.len() < 300 * 300,
        "{} bytes: not amplified",
        burst.len()
    );
    // And one plain CONNECT after them on the same connection.
    burst.extend(frame(0x1, 0x4, 601, &amplified_connect(false, 0)));
    tls.write_all(&burst).await.unwrap();
    let (seen, closed) = responses(&mut tls, 301, Duration::from_secs(10)).await;
    assert!(!closed, "the connection was closed");
    assert_eq!(seen.len(), 301);
    assert!(seen.range(..600).all(|(_, &refused)| refused), "{seen:?}");
    assert_eq!(
        seen.get(&601),
        Some(&false),
        "the plain CONNECT opened a tunnel"
    );
    assert_eq!(rejected(&wp, "header_list_too_large").await, 300.0);

    // 900 CONNECTs of ~15 MB decoded each, in one write: before the limit every
    // one got a 200 and resident memory rose by ~240 MiB. Now the first ends
    // the connection, and none is answered.
    let mut tls = raw_tls(&wp, &certs).await;
    h2_handshake(&mut tls).await;
    let mut burst = Vec::new();
    for i in 0..900u32 {
        let block = amplified_connect(i == 0, 15_000);
        burst.extend(frame(0x1, 0x4, 2 * i + 1, &block));
    }
    let _ = tls.write_all(&burst).await;
    let (seen, closed) = responses(&mut tls, 1, Duration::from_secs(10)).await;
    assert!(closed && seen.is_empty(), "{seen:?}");
    let grown = wp.rss_kib() - before;
    assert!(grown < 32 * 1024, "resident memory grew by {grown} KiB");
    assert_eq!(rejected(&wp, "h2_abuse").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_header_blocks_are_bounded_and_timed_out() {
    let world = World::productpage().await;
    let certs = Certs::new();
    let wp = WaypointProc::start_with(world.dir(), &certs.waypoint_dir, &["--header-timeout", "1"])
        .await;
    let before = wp.rss_kib();
    // Eight connections each try to send a 15 MiB header block (one literal
    // whose value never ends), 16 KiB per CONTINUATION frame.
    let mut conns = Vec::new();
    let mut sent_each = Vec::new();
    for _ in 0..8 {
        let mut tls = raw_tls(&wp, &certs).await;
        tls.write_all(PREFACE).await.unwrap();
        tls.write_all(&frame(0x4, 0, 0, &[])).await.unwrap();
        // Literal without indexing, new name "x", value length 15 MiB (7-bit
        // prefix integer), then the value's first bytes.
        let mut block = vec![0x00, 0x01, b'x', 0x7f];
        let mut rest = (15u32 << 20) - 127;
        while rest >= 128 {
            block.push((rest % 128) as u8 | 0x80);
            rest /= 128;
        }
        block.push(rest as u8);
        block.extend(std::iter::repeat_n(b'v', 16000));
        tls.write_all(&frame(0x1, 0, 1, &block)).await.unwrap();
        let chunk = frame(0x9, 0, 1, &[b'v'; 16384]);
        let mut sent = block.len();
        while sent < 15 << 20 {
            let write = tokio::time::timeout(Duration::from_millis(200), tls.write_all(&chunk));
            match write.await {
                Ok(Ok(())) => sent += chunk.len() - 9,
                _ => break,
            }
        }
        sent_each.push(sent);
        conns.push(tls);
    }
    for sent in &sent_each {
        assert!(
            *sent < 15 << 20,
            "the waypoint took all of a 15 MiB header block"
        );
    }
    let grown = wp.rss_kib() - before;
    assert!(grown < 16 * 1024, "resident memory grew by {grown} KiB");
    for mut tls in conns {
        assert!(closed_within(&mut tls, Duration::from_secs(5)).await);
    }

    // A small block left unfinished: closed at the header timeout, not before.
    let mut tls = raw_tls(&wp, &certs).await;
    tls.write_all(PREFACE).await.unwrap();
    tls.write_all(&frame(0x4, 0, 0, &[])).await.unwrap();
    tls.write_all(&frame(0x1, 0, 1, &[0x00, 0x01, b'x', 0x05, b'v']))
        .await
        .unwrap();
    let started = Instant::now();
    assert!(closed_within(&mut tls, Duration::from_secs(5)).await);
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert!(rejected(&wp, "header_timeout").await >= 1.0);
}

/// Open 100 tunnels, wait for their 200s, reset them all, repeat: h2's own
/// rapid-reset limit never sees a reset before the stream was accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_rapid_reset_gets_goaway() {
    let world = World::productpage().await;
    let certs = Certs::new();
    let wp = WaypointProc::start(world.dir(), &certs.waypoint_dir).await;
    let mut send = h2_client(&wp, &certs).await;
    let started = Instant::now();
    let mut opened = 0;
    let closed = 'rounds: loop {
        assert!(started.elapsed() < Duration::from_secs(20), "never closed");
        let mut streams = Vec::new();
        for _ in 0..100 {
            send = match send.ready().await {
                Ok(s) => s,
                Err(_) => break 'rounds true,
            };
            let Ok((resp, stream)) =
                send.send_request(connect_request(PRODUCTPAGE_VIP, &[]), false)
            else {
                break 'rounds true;
            };
            streams.push((resp, stream));
        }
        for (resp, mut stream) in streams {
            match resp.await {
                Ok(r) => assert_eq!(r.status(), StatusCode::OK),
                Err(_) => break 'rounds true,
            }
            stream.send_reset(h2::Reason::CANCEL);
            opened += 1;
        }
        if opened > 5000 {
            break false;
        }
    };
    assert!(closed);
    // Envoy's rule: at least half of 500 streams reset prematurely.
    assert!(opened <= 600, "closed only after {opened} streams");
    assert_eq!(
        rejected_reaching(&wp, "premature_resets", 1.0).await,
        1.0,
        "h2_abuse: {}",
        rejected(&wp, "h2_abuse").await
    );

    // A client whose tunnels live and end normally is never cut off.
    let client = crate::common::connect(&wp, &certs.client()).await;
    for _ in 0..30 {
        let mut t = waypoint::client::Tunnel::open(&client, PRODUCTPAGE_VIP)
            .await
            .unwrap();
        assert_eq!(
            crate::common::status(&mut t, "http://productpage:9080/").await,
            200
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_peers_are_dropped() {
    let world = World::productpage().await;
    let certs = Certs::new();
    let wp = WaypointProc::start_with(
        world.dir(),
        &certs.waypoint_dir,
        &[
            "--handshake-timeout",
            "1",
            "--hbone-keepalive-interval",
            "0.5",
            "--hbone-keepalive-timeout",
            "1",
        ],
    )
    .await;
    // TCP, then nothing: the TLS handshake times out.
    let mut tcp = TcpStream::connect(wp.hbone).await.unwrap();
    assert!(closed_within(&mut tcp, Duration::from_secs(5)).await);
    // TLS, then no HTTP/2 preface.
    let mut tls = raw_tls(&wp, &certs).await;
    assert!(closed_within(&mut tls, Duration::from_secs(5)).await);
    // A preface, then silence: PINGs go unanswered.
    let mut tls = raw_tls(&wp, &certs).await;
    tls.write_all(PREFACE).await.unwrap();
    tls.write_all(&frame(0x4, 0, 0, &[])).await.unwrap();
    let started = Instant::now();
    assert!(closed_within(&mut tls, Duration::from_secs(5)).await);
    assert!(started.elapsed() >= Duration::from_millis(1400));

    // A peer that answers PINGs keeps its connection through many intervals.
    let client = crate::common::connect(&wp, &certs.client()).await;
    let mut t = waypoint::client::Tunnel::open(&client, PRODUCTPAGE_VIP)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        crate::common::status(&mut t, "http://productpage:9080/").await,
        200
    );

    assert_eq!(rejected(&wp, "tls_handshake_timeout").await, 1.0);
    assert_eq!(rejected(&wp, "preface_timeout").await, 1.0);
    assert_eq!(rejected(&wp, "keepalive_timeout").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_headers_over_the_limits_get_431_before_any_upstream() {
    let world = World::productpage().await;
    let certs = Certs::new();
    let wp = WaypointProc::start(world.dir(), &certs.waypoint_dir).await;
    // Inside a tunnel.
    let mut t = tunnel(&wp, &certs, PRODUCTPAGE_VIP).await;
    let r = t
        .get(
            "http://productpage:9080/",
            &h("x-pad", &"c".repeat(256 * 1024)),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 431);
    // Under the limit still passes, on a new tunnel (431 closes the connection).
    let mut t = tunnel(&wp, &certs, PRODUCTPAGE_VIP).await;
    let r = t
        .get(
            "http://productpage:9080/",
            &h("x-pad", &"c".repeat(50 * 1024)),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    // On the plaintext listener: 101 headers.
    let mut s = TcpStream::connect(wp.http).await.unwrap();
    let mut req = String::from("GET / HTTP/1.1\r\nhost: productpage\r\n");
    for i in 0..100 {
        req.push_str(&format!("x-n: {i}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    let served: u64 = world.backends.values().map(|b| b.requests()).sum();
    assert_eq!(
        served, 1,
        "only the request under the limits reached a backend"
    );
    assert_eq!(rejected(&wp, "request_headers_too_large").await, 1.0);
    assert_eq!(rejected(&wp, "too_many_headers").await, 1.0);
}
