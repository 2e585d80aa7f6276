//! Which protocol a connection carries, told from its first bytes: the HTTP/2
//! connection preface (prior knowledge, as every gRPC client sends), an
//! HTTP/1.x request line, or anything else (opaque TCP).
//!
//! Bytes are compared as they arrive, so a short HTTP/1 request or one that
//! differs from the preface early is decided without waiting for more. Only a
//! port whose protocol is unknown falls back to TCP, and only there does a
//! silent client (a server-first protocol such as MySQL) cost a bounded wait.

use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Methods whose request line marks HTTP/1.x: RFC 9110's, PATCH and WebDAV's.
/// A known list, not any token, so that text protocols (Redis' inline `SET k v`,
/// SMTP's `HELO x`) stay TCP.
const METHODS: &[&[u8]] = &[
    b"GET",
    b"HEAD",
    b"POST",
    b"PUT",
    b"DELETE",
    b"CONNECT",
    b"OPTIONS",
    b"TRACE",
    b"PATCH",
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"SEARCH",
    b"REPORT",
    b"MKACTIVITY",
    b"CHECKOUT",
    b"MERGE",
    b"PURGE",
];
const LONGEST_METHOD: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    Http1,
    /// HTTP/2 with prior knowledge.
    Http2,
    /// Not HTTP, or nothing said before the wait ended: carried as bytes.
    Opaque,
}

/// What the port allows the bytes to be.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// The port is HTTP: HTTP/2 when the preface comes, else HTTP/1.1 (and a
    /// malformed request is the HTTP parser's to answer).
    Http,
    /// The port's protocol is unknown: HTTP when the bytes say so, else opaque,
    /// including when the client says nothing within `wait`.
    Any { wait: Duration },
}

/// What the first bytes say so far.
fn classify(seen: &[u8], expect: Expect) -> Option<Detected> {
    let preface_so_far = seen.len() <= H2_PREFACE.len() && H2_PREFACE.starts_with(seen);
    if preface_so_far {
        return (seen.len() == H2_PREFACE.len()).then_some(Detected::Http2);
    }
    if let Expect::Http = expect {
        return Some(Detected::Http1);
    }
    match seen.iter().position(|&b| b == b' ') {
        Some(end) if METHODS.contains(&&seen[..end]) => Some(Detected::Http1),
        Some(_) => Some(Detected::Opaque),
        None if seen.len() <= LONGEST_METHOD && seen.iter().all(u8::is_ascii_uppercase) => None,
        None => Some(Detected::Opaque),
    }
}

/// Reads from `io` until the protocol is known. The bytes read are returned
/// beside the answer, to be replayed to whoever handles the connection. The
/// end of the stream before a decision is opaque (what was sent is still
/// delivered).
pub async fn detect<R: AsyncRead + Unpin>(
    io: &mut R,
    expect: Expect,
) -> io::Result<(Detected, Vec<u8>)> {
    let mut seen = Vec::with_capacity(H2_PREFACE.len());
    let deadline = match expect {
        Expect::Any { wait } => Some(tokio::time::Instant::now() + wait),
        Expect::Http => None,
    };
    loop {
        if !seen.is_empty() {
            if let Some(found) = classify(&seen, expect) {
                return Ok((found, seen));
            }
        }
        let mut chunk = [0u8; H2_PREFACE.len()];
        let want = H2_PREFACE.len().saturating_sub(seen.len()).max(1);
        let read = io.read(&mut chunk[..want]);
        let n = match deadline {
            Some(at) => match tokio::time::timeout_at(at, read).await {
                Ok(n) => n?,
                Err(_) => return Ok((Detected::Opaque, seen)),
            },
            None => read.await?,
        };
        if n == 0 {
            let found = match expect {
                Expect::Http if !seen.is_empty() => Detected::Http1,
                _ => Detected::Opaque,
            };
            return Ok((found, seen));
        }
        seen.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    const ANY: Expect = Expect::Any {
        wait: Duration::from_millis(200),
    };

    async fn sent_in(parts: &[&[u8]], expect: Expect) -> (Detected, Vec<u8>) {
        let (mut client, mut server) = tokio::io::duplex(64);
        let parts: Vec<Vec<u8>> = parts.iter().map(|p| p.to_vec()).collect();
        // The client keeps its end open: detection must not need EOF.
        let writer = tokio::spawn(async move {
            for p in parts {
                client.write_all(&p).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            client
        });
        let out = detect(&mut server, expect).await.unwrap();
        drop(writer.await);
        out
    }

    #[tokio::test]
    async fn the_preface_byte_by_byte_is_http2() {
        let parts: Vec<&[u8]> = H2_PREFACE.chunks(1).collect();
        let (found, seen) = sent_in(&parts, ANY).await;
        assert_eq!(found, Detected::Http2);
        assert_eq!(seen, H2_PREFACE);
    }

    #[tokio::test]
    async fn a_short_request_is_http1_without_waiting_for_more() {
        // The writer keeps its end open and the wait is long: had detection
        // waited for more bytes it would have timed out as opaque.
        let patient = Expect::Any {
            wait: Duration::from_secs(60),
        };
        let (found, seen) = sent_in(&[b"GET / HTTP/1.1\r\n\r\n"], patient).await;
        assert_eq!(found, Detected::Http1);
        assert_eq!(seen, b"GET / HTTP/1.1\r\n\r\n");
        let (found, _) = sent_in(&[b"PU", b"T /x HTTP/1.1\r\n"], patient).await;
        assert_eq!(found, Detected::Http1);
    }

    #[tokio::test]
    async fn other_bytes_are_opaque() {
        for bytes in [
            &b"*1\r\n$4\r\nPING\r\n"[..],
            b"SET k v\r\n",
            b"PRI * HTTP/1.1\r\n",
            b"\x16\x03\x01\x02\x00",
        ] {
            let (found, seen) = sent_in(&[bytes], ANY).await;
            assert_eq!(found, Detected::Opaque, "{bytes:?}");
            assert!(bytes.starts_with(&seen));
        }
    }

    #[tokio::test]
    async fn a_silent_client_is_opaque_once_the_wait_ends() {
        let (_client, mut server) = tokio::io::duplex(64);
        let start = tokio::time::Instant::now();
        let (found, seen) = detect(&mut server, ANY).await.unwrap();
        assert_eq!((found, seen.len()), (Detected::Opaque, 0));
        assert!(start.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn an_http_port_never_falls_back_to_opaque() {
        let (found, _) = sent_in(&[b"\x16\x03\x01"], Expect::Http).await;
        assert_eq!(found, Detected::Http1);
        let (found, _) = sent_in(&[H2_PREFACE], Expect::Http).await;
        assert_eq!(found, Detected::Http2);
    }
}
