//! Idle tunnels and leases over an in-process HTTP/2 pair: what is parked, what
//! is taken, and that every tunnel leaving ends with END_STREAM, not a reset.

use super::*;
use crate::hbone::lease::Lease;
use crate::hbone::H2Stream;
use bytes::Bytes;
use h2::{RecvStream, SendStream};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

/// The server's halves of one tunnel.
type Far = (SendStream<Bytes>, RecvStream);

struct Pair {
    client: h2::client::SendRequest<Bytes>,
    accepted: mpsc::UnboundedReceiver<Far>,
}

async fn pair() -> Pair {
    let (a, b) = tokio::io::duplex(1 << 16);
    let (tx, accepted) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut conn = h2::server::handshake(b).await.unwrap();
        while let Some(Ok((req, mut respond))) = conn.accept().await {
            let send = respond
                .send_response(http::Response::new(()), false)
                .unwrap();
            let _ = tx.send((send, req.into_body()));
        }
    });
    let (client, conn) = h2::client::handshake(a).await.unwrap();
    tokio::spawn(conn);
    Pair { client, accepted }
}

impl Pair {
    async fn open(&mut self) -> (Tunnel, Far) {
        let req = http::Request::connect("10.0.0.1:80").body(()).unwrap();
        let (resp, send) = self
            .client
            .clone()
            .ready()
            .await
            .unwrap()
            .send_request(req, false)
            .unwrap();
        let resp = resp.await.unwrap();
        let mut t = Tunnel::new(send, resp.into_body());
        t.requests = 1;
        (t, self.accepted.recv().await.unwrap())
    }
}

fn key() -> TunnelKey {
    TunnelKey {
        hop: "127.0.0.1:15008".parse().unwrap(),
        expected: SpiffeId::new("cluster.local", "default", "ratings"),
        target: "10.0.0.1:80".parse().unwrap(),
        client: None,
    }
}

/// How the far side saw its tunnel end: Ok(()) for END_STREAM; Err for a reset.
/// It answers with its own END_STREAM, as ztunnel does once the app closes.
async fn far_end(far: &mut Far) -> Result<(), h2::Error> {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(5), far.1.data())
            .await
            .expect("the tunnel ends");
        match next {
            // END_STREAM may come on an empty DATA frame.
            Some(Ok(data)) if data.is_empty() => continue,
            Some(Ok(data)) => panic!("unexpected data {data:?}"),
            Some(Err(e)) => return Err(e),
            None => {
                // Already ended when the far side ended first.
                let _ = far.0.send_data(Bytes::new(), true);
                return Ok(());
            }
        }
    }
}

fn park(idle: &Arc<IdleTunnels>, t: Tunnel, deadline: Option<Instant>) {
    idle.coming(&key());
    idle.arrive(&key(), t, true, deadline);
}

fn id(t: &Tunnel) -> u32 {
    t.send.stream_id().as_u32()
}

#[tokio::test]
async fn the_newest_live_tunnel_is_taken_and_dead_ones_closed() {
    let mut p = pair().await;
    let idle = Arc::new(IdleTunnels::new(8));
    let (old, _old_far) = p.open().await;
    let (new, mut new_far) = p.open().await;
    let old_id = id(&old);
    park(&idle, old, None);
    park(&idle, new, None);
    // The peer ends the newest while it is idle: it cannot carry a request.
    new_far.0.send_data(Bytes::new(), true).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let taken = idle.take(&key()).await.expect("the older tunnel is live");
    assert_eq!(id(&taken), old_id);
    assert_eq!(idle.stats.idle.load(Ordering::Relaxed), 0);
    // The dead one was closed from our side too: the far end sees END_STREAM.
    far_end(&mut new_far).await.unwrap();
    assert!(idle.take(&key()).await.is_none());
}

#[tokio::test]
async fn expired_and_excess_tunnels_are_closed_cleanly() {
    let mut p = pair().await;
    let idle = Arc::new(IdleTunnels::new(1));
    let (a, mut a_far) = p.open().await;
    let (b, mut b_far) = p.open().await;
    park(&idle, a, None);
    // Over capacity: the oldest goes.
    park(&idle, b, Some(Instant::now() + Duration::from_millis(50)));
    far_end(&mut a_far).await.unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(!idle.sweep_once(), "nothing left to watch");
    far_end(&mut b_far).await.unwrap();
    assert!(idle.take(&key()).await.is_none());
}

#[tokio::test]
async fn a_settled_lease_parks_its_tunnel_and_reads_as_ended() {
    let mut p = pair().await;
    let idle = Arc::new(IdleTunnels::new(8));
    let (t, _far) = p.open().await;
    let stream_id = id(&t);
    let lease = Lease::new(idle.clone(), key(), None);
    let mut stream = H2Stream::from_tunnel(t).leased(lease.clone());
    lease.settle(true);
    // What Pingora's idle watch sees: end-of-stream, so it drops the stream.
    let mut buf = [0u8; 8];
    assert_eq!(stream.read(&mut buf).await.unwrap(), 0);
    assert_eq!(idle.stats.idle.load(Ordering::Relaxed), 1);
    drop(stream);
    let taken = idle.take(&key()).await.expect("parked");
    assert_eq!((id(&taken), taken.requests), (stream_id, 1));
}

#[tokio::test]
async fn a_tunnel_dropped_before_settling_or_settled_dirty_is_closed() {
    let mut p = pair().await;
    let idle = Arc::new(IdleTunnels::new(8));
    for settle in [None, Some(false)] {
        let (t, mut far) = p.open().await;
        let lease = Lease::new(idle.clone(), key(), None);
        let stream = H2Stream::from_tunnel(t).leased(lease.clone());
        if let Some(clean) = settle {
            lease.settle(clean);
        }
        drop(stream);
        // Settling after the drop changes nothing.
        lease.settle(true);
        far_end(&mut far).await.unwrap();
        assert!(idle.take(&key()).await.is_none());
        assert_eq!(idle.stats.idle.load(Ordering::Relaxed), 0);
    }
}

#[tokio::test]
async fn shutdown_closes_parked_tunnels_and_later_arrivals() {
    let mut p = pair().await;
    let idle = Arc::new(IdleTunnels::new(8));
    let (a, mut a_far) = p.open().await;
    let (b, mut b_far) = p.open().await;
    park(&idle, a, None);
    idle.close();
    park(&idle, b, None);
    far_end(&mut a_far).await.unwrap();
    far_end(&mut b_far).await.unwrap();
    assert_eq!(idle.stats.idle.load(Ordering::Relaxed), 0);
}
