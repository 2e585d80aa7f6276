//! The OTLP/gRPC span exporter, run on the waypoint's tokio runtime.
//!
//! The SDK's batch processor exports from a thread of its own, with no tokio
//! reactor, and tonic needs one: exporting there straight would panic and drop
//! every span (open-telemetry/opentelemetry-rust#2673). So each export is driven
//! on the runtime the exporter was built in, while the batch thread waits.

use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter as Export};
use opentelemetry_sdk::Resource;
use std::time::Duration;
use tokio::runtime::Handle;

#[derive(Debug)]
pub struct OnRuntime {
    inner: SpanExporter,
    runtime: Handle,
}

/// The exporter for `endpoint`, or for the `OTEL_EXPORTER_OTLP_*` variables when
/// none is given. Must be called inside the runtime that will drive exports.
pub fn build(endpoint: Option<&str>) -> Result<OnRuntime, opentelemetry_otlp::ExporterBuildError> {
    let mut builder = SpanExporter::builder().with_tonic();
    if let Some(endpoint) = endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    Ok(OnRuntime {
        inner: builder.build()?,
        runtime: Handle::current(),
    })
}

impl Export for OnRuntime {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        // Only ever called on the batch processor's thread, never on a runtime
        // worker, so blocking here is allowed.
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
