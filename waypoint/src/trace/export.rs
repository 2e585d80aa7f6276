//! The OTLP/gRPC span exporter, on a tokio runtime of its own.
//!
//! The SDK's batch processor exports from a thread of its own, with no tokio
//! reactor, and tonic needs one: exporting there straight would panic and drop
//! every span (open-telemetry/opentelemetry-rust#2673). So the exporter owns a
//! single-threaded runtime, and the batch thread drives it for each export. Not
//! the proxy's runtime: under load its workers are busy with requests, exports
//! fell behind and the SDK's queue dropped spans.

use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter as Export};
use opentelemetry_sdk::Resource;
use std::time::Duration;

#[derive(Debug)]
pub struct OnRuntime {
    inner: SpanExporter,
    runtime: tokio::runtime::Runtime,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("OTLP exporter: {0}")]
    Build(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("the OTLP exporter's runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// The exporter for `endpoint`, or for the `OTEL_EXPORTER_OTLP_*` variables when
/// none is given.
pub fn build(endpoint: Option<&str>) -> Result<OnRuntime, ExportError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // The gRPC channel's background task is spawned on this runtime.
    let _in_runtime = runtime.enter();
    let mut builder = SpanExporter::builder().with_tonic();
    if let Some(endpoint) = endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    let inner = builder.build()?;
    drop(_in_runtime);
    Ok(OnRuntime { inner, runtime })
}

impl Export for OnRuntime {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        // Only ever called on the batch processor's thread, outside any runtime,
        // so this thread may drive this one.
        let result = self.runtime.block_on(self.inner.export(batch));
        std::future::ready(result)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
