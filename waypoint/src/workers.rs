//! The data plane's threads. Each runs a single-threaded tokio runtime, and an
//! accepted connection is handed to one of them for its whole life, with
//! every tunnel and request on it, as Envoy keeps a connection on one worker.
//! On tokio's work-stealing runtime a busy HBONE connection's tunnels ran on
//! every worker, and threads woke each other on most requests (futex calls
//! and context switches per request, `benches/README.md`).
//!
//! Each worker also owns what a connection uses on its way upstream (here its
//! own proxies, and so its own upstream connection pools), as each Envoy worker
//! has its own: a pooled connection is then polled by the reactor of the worker
//! whose requests use it, and a request never waits on another thread's.
//!
//! Pingora's own single-threaded pool (`pingora_runtime`'s no-steal flavour)
//! spawns each pooled upstream connection's idle watch on a random thread; on
//! these workers it stays on the thread that released the connection.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// The default count: one per CPU.
pub fn per_cpu() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The threads, each with its own `C`, handed to what it serves.
pub struct Workers<C> {
    /// Each thread's runtime, and what it owns.
    threads: Vec<(Handle, C)>,
    next: AtomicUsize,
    /// Dropped with the workers: each thread's runtime then ends, and with it
    /// whatever still runs there.
    _stop: Vec<oneshot::Sender<()>>,
}

impl<C: Clone + Send + 'static> Workers<C> {
    /// `n` threads (at least one), named `waypoint-worker-<i>`, worker `i`
    /// owning `own(i)`.
    pub fn start(n: usize, mut own: impl FnMut(usize) -> C) -> std::io::Result<Workers<C>> {
        let mut threads = Vec::new();
        let mut stops = Vec::new();
        for i in 0..n.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            threads.push((rt.handle().clone(), own(i)));
            let (stop, stopped) = oneshot::channel::<()>();
            stops.push(stop);
            std::thread::Builder::new()
                .name(format!("waypoint-worker-{i}"))
                .spawn(move || {
                    let _ = rt.block_on(stopped);
                })?;
        }
        Ok(Workers {
            threads,
            next: AtomicUsize::new(0),
            _stop: stops,
        })
    }

    /// What each worker owns.
    pub fn owned(&self) -> impl Iterator<Item = &C> {
        self.threads.iter().map(|(_, own)| own)
    }

    /// Runs `serve(tcp, what the worker owns)` on the next worker in turn, the
    /// socket moved onto that worker's reactor.
    pub fn serve<F, Fut>(&self, tcp: TcpStream, serve: F)
    where
        F: FnOnce(TcpStream, C) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let std = match tcp.into_std() {
            Ok(s) => s,
            Err(e) => return log::warn!("handing a connection to a worker: {e}"),
        };
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.threads.len();
        let (handle, own) = &self.threads[i];
        let own = own.clone();
        handle.spawn(async move {
            match TcpStream::from_std(std) {
                Ok(tcp) => serve(tcp, own).await,
                Err(e) => log::warn!("registering a connection with its worker: {e}"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn thread_name() -> String {
        std::thread::current().name().unwrap_or("").to_string()
    }

    #[tokio::test]
    async fn connections_take_turns_and_each_stays_on_its_worker() {
        let workers = Workers::start(2, |i| i).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut seen = Vec::new();
        for _ in 0..4 {
            let mut client = TcpStream::connect(addr).await.unwrap();
            let (tcp, _) = listener.accept().await.unwrap();
            workers.serve(tcp, |mut tcp, own| async move {
                // Several awaits: the task must not move between them.
                let mut names = String::new();
                for _ in 0..3 {
                    let mut b = [0u8; 1];
                    tcp.read_exact(&mut b).await.unwrap();
                    tokio::task::yield_now().await;
                    names.push_str(&format!("{}/{own}", thread_name()));
                    names.push(';');
                }
                tcp.write_all(names.as_bytes()).await.unwrap();
            });
            client.write_all(b"abc").await.unwrap();
            let mut names = String::new();
            client.read_to_string(&mut names).await.unwrap();
            let names: Vec<&str> = names.trim_end_matches(';').split(';').collect();
            assert_eq!(names.len(), 3);
            assert!(names.iter().all(|n| *n == names[0]), "{names:?}");
            seen.push(names[0].to_string());
        }
        assert_eq!(
            seen,
            [
                "waypoint-worker-0/0",
                "waypoint-worker-1/1",
                "waypoint-worker-0/0",
                "waypoint-worker-1/1"
            ]
        );
    }

    #[tokio::test]
    async fn dropped_workers_end_what_runs_on_them() {
        let workers = Workers::start(1, |_| ()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        workers.serve(tcp, |_tcp, ()| std::future::pending());
        drop(workers);
        // The served task, and the socket it held, go with its runtime.
        let mut b = [0u8; 1];
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), client.read(&mut b));
        assert_eq!(
            read.await.unwrap().unwrap(),
            0,
            "closed by the worker's end"
        );
    }
}
