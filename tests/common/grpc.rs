//! A gRPC backend and client for the tests: `test.Echo`, written against
//! tonic's server and client APIs with prost messages (no codegen, as the CA
//! client does), served by tonic beside tonic-health's `grpc.health.v1`.
//!
//! `test.Echo` methods, each answering with the pod's name:
//! - `Unary`: the text back. Metadata `x-echo-code: N` answers gRPC status N;
//!   `x-echo-delay-ms: N` answers after N ms. [`GrpcBackend::fail_next`] makes
//!   the next calls fail with a given code.
//! - `Collect` (client streaming): the texts joined with `+`.
//! - `Count` (server streaming): `text` messages `0`, `1`, ..., 20 ms apart;
//!   `N!` sends N and then ends with `ABORTED` (the server cancelling);
//!   "forever" never ends. A stream the client cancels is counted.
//! - `Chat` (bidirectional): each message back as it comes.

use futures::{Stream, StreamExt};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::codegen::{http, Body, BoxFuture, StdError};
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;

#[derive(Clone, PartialEq, prost::Message)]
pub struct Msg {
    #[prost(string, tag = "1")]
    pub text: String,
    #[prost(string, tag = "2")]
    pub pod: String,
}

pub fn msg(text: &str) -> Msg {
    Msg {
        text: text.into(),
        pod: String::new(),
    }
}

#[derive(Default)]
struct Shared {
    name: String,
    calls: AtomicU64,
    cancelled: AtomicU64,
    fail_next: AtomicU64,
    fail_code: AtomicI32,
}

pub struct GrpcBackend {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl GrpcBackend {
    pub async fn start(name: &str) -> GrpcBackend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            name: name.into(),
            ..Default::default()
        });
        let (_, health) = tonic_health::server::health_reporter();
        let echo = EchoServer(shared.clone());
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(health)
                .add_service(echo)
                // As gRPC servers do (grpc-go, tonic's own `serve`): with Nagle,
                // answers multiplexed on one connection wait for delayed ACKs.
                .serve_with_incoming(
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                )
                .await;
        });
        GrpcBackend { addr, shared, task }
    }

    /// Calls answered (or failed on purpose) so far.
    pub fn calls(&self) -> u64 {
        self.shared.calls.load(Ordering::SeqCst)
    }

    /// Server streams whose client went away before the end.
    pub fn cancelled(&self) -> u64 {
        self.shared.cancelled.load(Ordering::SeqCst)
    }

    /// The next `n` unary calls fail with `code`.
    pub fn fail_next(&self, n: u64, code: Code) {
        self.shared.fail_code.store(code as i32, Ordering::SeqCst);
        self.shared.fail_next.store(n, Ordering::SeqCst);
    }
}

impl Drop for GrpcBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct EchoServer(Arc<Shared>);

impl tonic::server::NamedService for EchoServer {
    const NAME: &'static str = "test.Echo";
}

type MsgStream = Pin<Box<dyn Stream<Item = Result<Msg, Status>> + Send>>;

/// Counts a server stream as cancelled if it is dropped before its end.
struct Watched {
    inner: MsgStream,
    done: bool,
    shared: Arc<Shared>,
}

impl Stream for Watched {
    type Item = Result<Msg, Status>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = self.inner.as_mut().poll_next(cx);
        if let Poll::Ready(None) = next {
            self.done = true;
        }
        next
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        if !self.done {
            self.shared.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn metadata_num(req: &Request<impl Sized>, name: &str) -> Option<u64> {
    req.metadata().get(name)?.to_str().ok()?.parse().ok()
}

impl<B> tower::Service<http::Request<B>> for EchoServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let shared = self.0.clone();
        let mut grpc = tonic::server::Grpc::new(ProstCodec::<Msg, Msg>::default());
        let path = req.uri().path().to_string();
        Box::pin(async move {
            let pod = shared.name.clone();
            let reply = move |text: String| Msg {
                text,
                pod: pod.clone(),
            };
            Ok(match path.as_str() {
                "/test.Echo/Unary" => {
                    let svc = tower::service_fn(move |req: Request<Msg>| {
                        let shared = shared.clone();
                        let reply = reply.clone();
                        async move {
                            shared.calls.fetch_add(1, Ordering::SeqCst);
                            if let Some(ms) = metadata_num(&req, "x-echo-delay-ms") {
                                tokio::time::sleep(Duration::from_millis(ms)).await;
                            }
                            let failing = shared
                                .fail_next
                                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                                    n.checked_sub(1)
                                })
                                .is_ok();
                            let code = match metadata_num(&req, "x-echo-code") {
                                Some(c) => Some(c as i32),
                                None if failing => Some(shared.fail_code.load(Ordering::SeqCst)),
                                None => None,
                            };
                            if let Some(code) = code.filter(|c| *c != 0) {
                                return Err(Status::new(Code::from_i32(code), "as asked"));
                            }
                            Ok(Response::new(reply(req.into_inner().text)))
                        }
                    });
                    grpc.unary(svc, req).await
                }
                "/test.Echo/Collect" => {
                    let svc = tower::service_fn(move |req: Request<Streaming<Msg>>| {
                        let reply = reply.clone();
                        async move {
                            let mut texts = Vec::new();
                            let mut s = req.into_inner();
                            while let Some(m) = s.message().await? {
                                texts.push(m.text);
                            }
                            Ok::<_, Status>(Response::new(reply(texts.join("+"))))
                        }
                    });
                    grpc.client_streaming(svc, req).await
                }
                "/test.Echo/Count" => {
                    let svc = tower::service_fn(move |req: Request<Msg>| {
                        let reply = reply.clone();
                        let shared = shared.clone();
                        async move {
                            let text = req.into_inner().text;
                            let (n, abort) = match text.strip_suffix('!') {
                                _ if text == "forever" => (u64::MAX, false),
                                Some(n) => (n.parse().unwrap_or(0), true),
                                None => (text.parse().unwrap_or(0), false),
                            };
                            let ticks = futures::stream::iter(0..n).then(move |i| {
                                let reply = reply.clone();
                                async move {
                                    tokio::time::sleep(Duration::from_millis(20)).await;
                                    Ok(reply(i.to_string()))
                                }
                            });
                            let end = abort.then(|| Err(Status::aborted("stopped by the server")));
                            let ticks = ticks.chain(futures::stream::iter(end));
                            let s: MsgStream = Box::pin(Watched {
                                inner: Box::pin(ticks),
                                done: false,
                                shared,
                            });
                            Ok::<_, Status>(Response::new(s))
                        }
                    });
                    grpc.server_streaming(svc, req).await
                }
                "/test.Echo/Chat" => {
                    let svc = tower::service_fn(move |req: Request<Streaming<Msg>>| {
                        let reply = reply.clone();
                        async move {
                            let s: MsgStream =
                                Box::pin(req.into_inner().map(move |m| m.map(|m| reply(m.text))));
                            Ok::<_, Status>(Response::new(s))
                        }
                    });
                    grpc.streaming(svc, req).await
                }
                _ => Status::unimplemented(path).into_http(),
            })
        })
    }
}

/// A `test.Echo` client on one channel (one HTTP/2 connection).
#[derive(Clone)]
pub struct EchoClient(tonic::client::Grpc<Channel>);

fn path(method: &'static str) -> http::uri::PathAndQuery {
    http::uri::PathAndQuery::from_static(method)
}

impl EchoClient {
    pub fn new(channel: Channel) -> Self {
        EchoClient(tonic::client::Grpc::new(channel))
    }

    async fn ready(&mut self) -> Result<(), Status> {
        self.0
            .ready()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))
    }

    pub async fn unary(&mut self, req: Request<Msg>) -> Result<Response<Msg>, Status> {
        self.ready().await?;
        self.0
            .unary(req, path("/test.Echo/Unary"), ProstCodec::default())
            .await
    }

    pub async fn collect(&mut self, texts: Vec<Msg>) -> Result<Response<Msg>, Status> {
        self.ready().await?;
        let req = Request::new(futures::stream::iter(texts));
        self.0
            .client_streaming(req, path("/test.Echo/Collect"), ProstCodec::default())
            .await
    }

    pub async fn count(&mut self, n: &str) -> Result<Response<Streaming<Msg>>, Status> {
        self.ready().await?;
        self.0
            .server_streaming(
                Request::new(msg(n)),
                path("/test.Echo/Count"),
                ProstCodec::default(),
            )
            .await
    }

    pub async fn chat(
        &mut self,
        out: impl Stream<Item = Msg> + Send + 'static,
    ) -> Result<Response<Streaming<Msg>>, Status> {
        self.ready().await?;
        self.0
            .streaming(
                Request::new(out),
                path("/test.Echo/Chat"),
                ProstCodec::default(),
            )
            .await
    }
}

/// A channel to the waypoint's plaintext listener naming `authority` (a
/// Service host) as its `:authority`, as a gRPC client of that Service would.
pub async fn plaintext_channel(waypoint: SocketAddr, authority: &str) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{waypoint}"))
        .unwrap()
        .origin(format!("http://{authority}").parse().unwrap())
        .connect()
        .await
        .unwrap()
}

/// A channel over one HBONE tunnel to `authority` (`ip:port`), as a gRPC client
/// whose ztunnel carries its connection to the waypoint.
pub async fn tunnel_channel(
    client: &waypoint::hbone::client::HboneClient,
    authority: &str,
) -> Channel {
    let stream = client.open(authority).await.unwrap();
    let slot = Arc::new(std::sync::Mutex::new(Some(hyper_util::rt::TokioIo::new(
        stream,
    ))));
    let connector = tower::service_fn(move |_: http::Uri| {
        let io = slot.lock().unwrap().take();
        async move { io.ok_or_else(|| std::io::Error::other("the tunnel was already used")) }
    });
    tonic::transport::Endpoint::from_shared(format!("http://{authority}"))
        .unwrap()
        .connect_with_connector(connector)
        .await
        .unwrap()
}
