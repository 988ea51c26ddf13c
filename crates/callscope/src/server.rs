//! Runs the collector and the customer API together, watches them, and stops them in
//! order.
//!
//! Every listener runs as its own task and the store has its writer thread. None of
//! them ends on its own while the server runs; when one does (an accept loop that
//! failed, a panic), [`Server::failure`] resolves and the process stops with that
//! error, rather than serving on without it until shutdown finds out.

use std::{net::SocketAddr, sync::Arc};

use anyhow::Context as _;
use callscope_api::{ApiState, KeyRing, console::limit::ClientAddr};
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
    tasks: Vec<Task>,
}

/// A listener's task, and its result once [`Server::failure`] has taken it.
struct Task {
    name: &'static str,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
    ended: Option<anyhow::Result<()>>,
}

impl Task {
    fn new(name: &'static str, handle: JoinHandle<anyhow::Result<()>>) -> Self {
        Self {
            name,
            handle: Some(handle),
            ended: None,
        }
    }
}

/// A task's outcome, with a panic or cancellation as an error.
fn outcome(joined: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    joined.unwrap_or_else(|e| Err(anyhow::Error::from(e)))
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
        let key_task = crate::keys::KeyTask::new(config, store.clone(), keys.clone());
        key_task.reload().await.context("loading API keys")?;

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
        tasks.push(Task::new(
            "OTLP/gRPC server",
            tokio::spawn({
                let (c, s) = (collector.clone(), stopped(&stop));
                async move {
                    callscope_collector::serve_grpc(grpc, c, s)
                        .await
                        .context("OTLP/gRPC server")
                }
            }),
        ));
        tasks.push(Task::new(
            "OTLP/HTTP server",
            tokio::spawn({
                let s = stopped(&stop);
                async move {
                    axum::serve(http, http_app)
                        .with_graceful_shutdown(s)
                        .await
                        .context("OTLP/HTTP server")
                }
            }),
        ));
        tasks.push(Task::new(
            "API server",
            tokio::spawn({
                let s = stopped(&stop);
                async move {
                    axum::serve(
                        api,
                        api_app.into_make_service_with_connect_info::<ClientAddr>(),
                    )
                    .with_graceful_shutdown(s)
                    .await
                    .context("API server")
                }
            }),
        ));

        tasks.push(Task::new(
            "API key reloader",
            tokio::spawn({
                let s = stopped(&stop);
                async move {
                    key_task.run(s).await;
                    Ok(())
                }
            }),
        ));

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

    /// Resolves when a listener's task or the storage writer has ended without being
    /// asked to: the error says which, and why when it is known. A server that has
    /// failed should be shut down ([`Server::shutdown`]) and the process should exit
    /// with the error.
    pub async fn failure(&mut self) -> anyhow::Error {
        let store = self.store.clone();
        let writer = store.writer_exited();
        let tasks = std::future::poll_fn(|cx| {
            for task in &mut self.tasks {
                let Some(handle) = task.handle.as_mut() else {
                    continue;
                };
                if let std::task::Poll::Ready(joined) = std::pin::Pin::new(handle).poll(cx) {
                    task.handle = None;
                    let message = match &joined {
                        Ok(Ok(())) => format!("the {} stopped on its own", task.name),
                        Ok(Err(e)) => format!("the {} failed: {e:#}", task.name),
                        Err(e) => format!("the {} panicked or was cancelled: {e}", task.name),
                    };
                    task.ended = Some(outcome(joined));
                    return std::task::Poll::Ready(anyhow::anyhow!(message));
                }
            }
            std::task::Poll::Pending
        });
        tokio::select! {
            e = tasks => e,
            () = writer => anyhow::anyhow!(
                "the storage writer stopped; no record can be stored (see the log above)"
            ),
        }
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
            let result = match (t.handle, t.ended) {
                (Some(handle), _) => outcome(handle.await),
                (None, Some(ended)) => ended,
                (None, None) => Ok(()),
            };
            if let Err(e) = result {
                first_err.get_or_insert(e);
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
