//! The admin listener: readiness and a dump of the config in use.

use crate::identity::IdentityStore;
use crate::state::State;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    metrics: Arc<crate::metrics::Metrics>,
    identity: Option<Arc<IdentityStore>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r { Ok(a) => a, Err(_) => continue },
            _ = shutdown.changed() => return,
        };
        let state = state.clone();
        let metrics = metrics.clone();
        let identity = identity.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let (state, metrics) = (state.clone(), metrics.clone());
                let identity = identity.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(handle(
                        &req,
                        &state,
                        &metrics,
                        identity.as_deref(),
                    ))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

/// `/logging?level=debug`: the log level, changed at run time (Envoy's form).
fn logging(query: Option<&str>) -> (StatusCode, String) {
    let level = query
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("level=")))
        .map(str::parse::<log::LevelFilter>);
    match level {
        Some(Ok(level)) => {
            crate::logging::set_level(level);
            (StatusCode::OK, format!("log level {level}\n"))
        }
        Some(Err(_)) => (
            StatusCode::BAD_REQUEST,
            "level must be one of off, error, warn, info, debug, trace\n".into(),
        ),
        None => (StatusCode::OK, format!("log level {}\n", log::max_level())),
    }
}

/// Ready when the config is in and the identity can serve handshakes (a
/// certificate issued and not expired).
fn readiness(state: &State, identity: Option<&IdentityStore>) -> (StatusCode, String) {
    if !state.is_ready() {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_string());
    }
    match identity.map(|i| i.serving(std::time::SystemTime::now())) {
        Some(Err(why)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
        _ => (StatusCode::OK, "ready\n".to_string()),
    }
}

fn handle(
    req: &Request<Incoming>,
    state: &State,
    metrics: &crate::metrics::Metrics,
    identity: Option<&IdentityStore>,
) -> Response<Full<Bytes>> {
    let (status, body) = match req.uri().path() {
        "/healthz/ready" => readiness(state, identity),
        "/config_dump" => {
            let rt = state.current();
            let dump = serde_json::json!({
                "generation": rt.generation,
                "snapshot": &rt.snapshot,
            });
            (
                StatusCode::OK,
                serde_json::to_string_pretty(&dump).unwrap_or_default(),
            )
        }
        "/stats/prometheus" => (StatusCode::OK, metrics.render()),
        "/clusters" => {
            let rt = state.current();
            let mut out = String::new();
            for (name, endpoints) in rt.upstreams.status(&rt.snapshot) {
                for (addr, active, ejected) in endpoints {
                    let health = if ejected {
                        "/failed_outlier_check"
                    } else {
                        "healthy"
                    };
                    out.push_str(&format!("{name}::{addr}::rq_active::{active}\n{name}::{addr}::health_flags::{health}\n"));
                }
            }
            (StatusCode::OK, out)
        }
        "/logging" => logging(req.uri().query()),
        _ => (StatusCode::NOT_FOUND, "not found\n".to_string()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp
}
