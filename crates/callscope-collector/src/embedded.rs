//! A log exporter for services that embed callscope: the OpenTelemetry SDK's log batches
//! go through the same [`VisibilityFilter`] as OTLP requests and straight into the
//! [`Store`], without a network hop.
//!
//! ```no_run
//! # fn demo(store: callscope_store::Store) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//!
//! use callscope_collector::{EmbeddedLogExporter, VisibilityConfig, VisibilityFilter};
//! use opentelemetry_sdk::logs::SdkLoggerProvider;
//!
//! let filter = Arc::new(VisibilityFilter::new(&VisibilityConfig::default())?);
//! let provider = SdkLoggerProvider::builder()
//!     .with_batch_exporter(EmbeddedLogExporter::new(filter, store))
//!     .build();
//! # let _ = provider;
//! # Ok(()) }
//! ```

use std::sync::Arc;

use callscope_store::Store;
use opentelemetry_proto::{
    tonic::collector::logs::v1::ExportLogsServiceRequest,
    transform::{
        common::tonic::ResourceAttributesWithSchema, logs::tonic::group_logs_by_resource_and_scope,
    },
};
use opentelemetry_sdk::{
    Resource,
    error::{OTelSdkError, OTelSdkResult},
    logs::{LogBatch, LogExporter},
};

use crate::visibility::VisibilityFilter;

/// Exports SDK log records to the call-log store, through the visibility filter.
///
/// An export resolves `Ok` only once the batch's customer records are committed; a full
/// write queue or a failed commit is an error, which the SDK's processor reports. Internal
/// and rejected records are counted by the filter and otherwise dropped: this exporter does
/// not forward anything.
#[derive(Debug)]
pub struct EmbeddedLogExporter {
    filter: Arc<VisibilityFilter>,
    store: Store,
    resource: ResourceAttributesWithSchema,
}

impl EmbeddedLogExporter {
    /// An exporter writing to `store` through `filter`.
    #[must_use]
    pub fn new(filter: Arc<VisibilityFilter>, store: Store) -> Self {
        Self {
            filter,
            store,
            resource: ResourceAttributesWithSchema::default(),
        }
    }

    /// The OTLP request the SDK batch amounts to, as a receiver would get it.
    fn request(&self, batch: &LogBatch<'_>) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: group_logs_by_resource_and_scope(batch, &self.resource),
        }
    }
}

impl LogExporter for EmbeddedLogExporter {
    fn export(
        &self,
        batch: LogBatch<'_>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        // Filter now, so the future holds owned records and not the batch.
        let out = self.filter.apply(&self.request(&batch));
        let store = self.store.clone();
        async move {
            if out.records.is_empty() {
                return Ok(());
            }
            store
                .append(out.records)
                .await
                .map(drop)
                .map_err(|e| OTelSdkError::InternalFailure(format!("callscope store: {e}")))
        }
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = resource.into();
    }
}
