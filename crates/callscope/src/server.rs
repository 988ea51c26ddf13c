//! Runs the collector and the customer API together, and stops them in order.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use callscope_api::{ApiState, KeyRing};
use callscope_collector::Collector;
use callscope_model::metrics::MetricsSource;
use callscope_store::Store;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

use crate::config::Config;

/// A running callscope: OTLP/gRPC, OTLP/HTTP and the customer API.
pub struct Server {
    /// Where OTLP/gRPC listens.
    pub grpc_addr: SocketAddr,
    /// Where OTLP/HTTP listens.
    pub http_addr: SocketAddr,
    /// Where the customer API listens.
    pub api_addr: SocketAddr,
    store: Store,
    collector: Arc<Collector>,
    api: ApiState,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl Server {
    /// Opens storage, binds every listener and starts serving.
    ///
    /// # Errors
    /// Storage cannot be opened, a port cannot be bound, or the configuration is
    /// refused by a component.
    pub async fn start(config: &Config) -> anyhow::Result<Server> {
        let store = Store::open(&config.storage).context("opening storage")?;

        let keys = Arc::new(KeyRing::new());
        for k in &config.api.keys {
            keys.insert(&k.key_sha256, &k.tenant).context("api.keys")?;
        }
        for (hash, tenant) in store.api_keys().await.context("reading stored API keys")? {
            keys.insert(&hash, &tenant).context("stored API key")?;
        }

        let collector = Collector::builder(store.clone())
            .otlp(config.otlp.clone())
            .visibility(config.visibility.clone())
            .forward(config.forward.clone())
            .build()
            .context("configuring the collector")?;

        let grpc = TcpListener::bind(config.otlp.grpc_addr)
            .await
            .with_context(|| format!("binding otlp.grpc_addr {}", config.otlp.grpc_addr))?;
        let http = TcpListener::bind(config.otlp.http_addr)
            .await
            .with_context(|| format!("binding otlp.http_addr {}", config.otlp.http_addr))?;
        let api = TcpListener::bind(config.api.addr)
            .await
            .with_context(|| format!("binding api.addr {}", config.api.addr))?;
        let (grpc_addr, http_addr, api_addr) =
            (grpc.local_addr()?, http.local_addr()?, api.local_addr()?);

        let (stop, _) = watch::channel(false);
        let stopped = |stop: &watch::Sender<bool>| {
            let mut rx = stop.subscribe();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };

        let metrics: Vec<Arc<dyn MetricsSource>> = vec![collector.clone()];
        let api_state = ApiState::new(store.clone(), keys).with_metrics(metrics);
        let api_app = callscope_api::router(api_state.clone());
        let api = api_state.listener(
            api,
            std::time::Duration::from_secs(config.api.write_stall_timeout_secs.max(1)),
        );
        let http_app = callscope_collector::http_router(collector.clone());

        let mut tasks = Vec::new();
        tasks.push(tokio::spawn({
            let (c, s) = (collector.clone(), stopped(&stop));
            async move {
                callscope_collector::serve_grpc(grpc, c, s)
                    .await
                    .context("OTLP/gRPC server")
            }
        }));
        tasks.push(tokio::spawn({
            let s = stopped(&stop);
            async move {
                axum::serve(http, http_app)
                    .with_graceful_shutdown(s)
                    .await
                    .context("OTLP/HTTP server")
            }
        }));
        tasks.push(tokio::spawn({
            let s = stopped(&stop);
            async move {
                axum::serve(api, api_app)
                    .with_graceful_shutdown(s)
                    .await
                    .context("API server")
            }
        }));

        tracing::info!(%grpc_addr, %http_addr, %api_addr, storage = %store.path().display(), "callscope is serving.");
        Ok(Server {
            grpc_addr,
            http_addr,
            api_addr,
            store,
            collector,
            api: api_state,
            stop,
            tasks,
        })
    }

    /// The store the server writes to.
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The collector (for its metrics).
    #[must_use]
    pub fn collector(&self) -> &Arc<Collector> {
        &self.collector
    }

    /// Graceful stop: stop accepting, let in-flight requests finish (their records
    /// commit), end live streams, drain forwarders, checkpoint storage.
    ///
    /// # Errors
    /// A server task failed, or the final checkpoint failed.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        // Live streams never end by themselves; the API server's graceful shutdown
        // waits for every open response.
        self.api.close_streams();
        let mut first_err = None;
        for t in self.tasks {
            match t.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(e) => {
                    first_err.get_or_insert(anyhow::Error::from(e));
                }
            }
        }
        // Forwarders get a short grace period to deliver what is queued; storage is
        // already committed for everything acknowledged.
        self.collector
            .shutdown(std::time::Duration::from_secs(5))
            .await;
        self.store.shutdown().await.context("closing storage")?;
        first_err.map_or(Ok(()), Err)
    }
}
