//! Distributed tracing (OpenTelemetry): the caller's W3C or B3 context is read,
//! a server span covers each request and a client span each upstream try, and
//! the try's context goes upstream. Spans leave over OTLP/gRPC in batches.
//!
//! Off unless an endpoint is configured; the proxy then holds no [`Tracing`] and
//! its hooks skip this module, so trace headers pass through untouched.
//! Attributes follow the stable HTTP semantic conventions, plus Envoy's
//! `response_flags`, `upstream_cluster` and `guid:x-request-id` and Istio's
//! `source.principal` / `destination.principal`.

mod export;
mod propagation;

pub use propagation::B3;

use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::trace::{SpanRef, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use pingora::http::RequestHeader;
use std::net::IpAddr;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct TraceArgs {
    /// OTLP/gRPC collector for traces (e.g. http://otel-collector.istio-system:4317).
    /// Unset: the standard OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
    /// OTEL_EXPORTER_OTLP_ENDPOINT turn tracing on; with neither, no spans are made.
    #[arg(long, env = "WAYPOINT_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Share of new traces to sample, 0.0 to 1.0. A caller's sampling decision is
    /// kept (parent-based). Unset: OTEL_TRACES_SAMPLER(_ARG), else every trace.
    #[arg(long, env = "WAYPOINT_TRACE_SAMPLING", value_parser = ratio)]
    pub trace_sampling: Option<f64>,
}

fn ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("{s:?} is not a ratio between 0.0 and 1.0")),
    }
}

impl TraceArgs {
    /// Whether any exporter is configured, by flag or by the OTel variables.
    fn enabled(&self) -> bool {
        let var = |k: &str| std::env::var(k).is_ok_and(|v| !v.is_empty());
        let is =
            |k: &str, value: &str| std::env::var(k).is_ok_and(|v| v.eq_ignore_ascii_case(value));
        if is("OTEL_TRACES_EXPORTER", "none") || is("OTEL_SDK_DISABLED", "true") {
            return false;
        }
        self.otlp_endpoint.is_some()
            || var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            || var("OTEL_EXPORTER_OTLP_ENDPOINT")
    }
}

pub struct Tracing {
    tracer: SdkTracer,
    provider: SdkTracerProvider,
}

impl Tracing {
    /// `None` when no exporter is configured; `service` names the waypoint
    /// unless OTEL_SERVICE_NAME does.
    pub fn from_args(
        args: &TraceArgs,
        service: &str,
    ) -> Result<Option<Tracing>, export::ExportError> {
        if !args.enabled() {
            return Ok(None);
        }
        for k in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Ok(p) = std::env::var(k).map(|p| p.to_ascii_lowercase()) {
                if p != "grpc" {
                    log::warn!("{k}={p}: only OTLP over gRPC is built in; exporting over gRPC");
                }
            }
        }
        let exporter = export::build(args.otlp_endpoint.as_deref())?;
        let mut resource = opentelemetry_sdk::Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name(service.to_string());
        }
        let mut builder = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build());
        if let Some(r) = args.trace_sampling {
            builder = builder.with_sampler(Sampler::ParentBased(Box::new(
                Sampler::TraceIdRatioBased(r),
            )));
        }
        let provider = builder.build();
        let tracer = provider.tracer("pingora-waypoint");
        Ok(Some(Tracing { tracer, provider }))
    }

    /// Sends what is still queued; blocks, so not from a runtime's worker.
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            log::warn!("flushing spans at shutdown: {e}");
        }
    }

    /// The server span of a request that just arrived.
    pub fn start(&self, req: &RequestHeader, client: Option<IpAddr>) -> RequestTrace {
        let (parent, b3) = propagation::extract(&req.headers);
        let mut span = self
            .tracer
            .span_builder(req.method.to_string())
            .with_kind(SpanKind::Server)
            .start_with_context(&self.tracer, &parent);
        if span.is_recording() {
            let header = |k: &str| req.headers.get(k).and_then(|v| v.to_str().ok());
            let mut attrs = vec![
                KeyValue::new("http.request.method", req.method.to_string()),
                KeyValue::new("url.path", req.uri.path().to_string()),
                KeyValue::new("url.scheme", "http"),
                KeyValue::new("network.protocol.version", version(req.version)),
                KeyValue::new("component", "proxy"),
            ];
            if let Some(host) = header("host").and_then(|h| h.parse::<http::uri::Authority>().ok())
            {
                attrs.push(KeyValue::new("server.address", host.host().to_string()));
                if let Some(port) = host.port_u16() {
                    attrs.push(KeyValue::new("server.port", i64::from(port)));
                }
            }
            if let Some(ip) = client {
                attrs.push(KeyValue::new("client.address", ip.to_string()));
            }
            if let Some(ua) = header("user-agent") {
                attrs.push(KeyValue::new("user_agent.original", ua.to_string()));
            }
            if let Some(id) = header("x-request-id") {
                attrs.push(KeyValue::new("guid:x-request-id", id.to_string()));
            }
            span.set_attributes(attrs);
        }
        RequestTrace {
            tracer: self.tracer.clone(),
            server: parent.with_span(span),
            b3,
            attempt: None,
        }
    }
}

fn version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        _ => "1.1",
    }
}

/// One request's spans: the server span, and the current try's client span.
pub struct RequestTrace {
    tracer: SdkTracer,
    server: Context,
    b3: Option<B3>,
    attempt: Option<Context>,
}

impl RequestTrace {
    /// Whether the request is sampled; unsampled requests make no client spans
    /// and pass the server span's context on instead.
    pub fn recording(&self) -> bool {
        self.server.span().is_recording()
    }

    /// Names the server span after the route's destination, as Envoy's operation
    /// name does in Istio: `reviews.default.svc.cluster.local:9080/*`.
    pub fn rename(&self, host: &str, port: u16) {
        if self.recording() {
            self.server.span().update_name(format!("{host}:{port}/*"));
        }
    }

    /// Opens the client span of an upstream try, named as Envoy's router names
    /// it (`router <cluster> egress`), closing any try still open.
    pub fn start_try(&mut self, cluster: &str, attrs: impl FnOnce() -> Vec<KeyValue>) {
        if !self.recording() {
            return;
        }
        self.end_try(None);
        let span = self
            .tracer
            .span_builder(format!("router {cluster} egress"))
            .with_kind(SpanKind::Client)
            .with_attributes(attrs())
            .start_with_context(&self.tracer, &self.server);
        self.attempt = Some(self.server.with_span(span));
    }

    /// Writes the current try's context (or the server span's) upstream.
    pub fn inject(&self, req: &mut RequestHeader) {
        let cx = self.attempt.as_ref().unwrap_or(&self.server);
        propagation::inject(cx, self.b3, req);
    }

    /// The status the current try's upstream answered.
    pub fn try_status(&self, status: u16) {
        if let Some(cx) = &self.attempt {
            let span = cx.span();
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
            if status >= 400 {
                fail(&span, status.to_string(), None);
            }
        }
    }

    /// Ends the current try's span; `error` says why the try failed, if it did
    /// (rendered only when there is a span to put it on).
    pub fn end_try(&mut self, error: Option<&dyn std::fmt::Display>) {
        if let Some(cx) = self.attempt.take() {
            let span = cx.span();
            if let Some(error) = error {
                fail(&span, "upstream_failure".into(), Some(&error.to_string()));
            }
            span.end();
        }
    }

    /// Ends the request's spans with what the client was answered (0: nothing).
    pub fn finish(mut self, status: u16, attrs: impl FnOnce() -> Vec<KeyValue>) {
        self.end_try(None);
        let span = self.server.span();
        if span.is_recording() {
            span.set_attributes(attrs());
            if status != 0 {
                span.set_attribute(KeyValue::new(
                    "http.response.status_code",
                    i64::from(status),
                ));
            }
            // Server spans: 4xx is the client's doing, not an error (semconv).
            if status == 0 {
                fail(&span, "no_response".into(), None);
            } else if status >= 500 {
                fail(&span, status.to_string(), None);
            }
        }
        span.end();
    }
}

fn fail(span: &SpanRef<'_>, kind: String, message: Option<&str>) {
    span.set_attribute(KeyValue::new("error.type", kind));
    span.set_status(Status::error(message.unwrap_or_default().to_string()));
}
