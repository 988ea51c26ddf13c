//! `callscope`: the OpenTelemetry collector and customer API for voice-agent call logs.

use std::path::PathBuf;

use anyhow::Context as _;
use callscope::{Config, Server};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "callscope",
    version,
    about = "Customer-facing call logs for voice-agent platforms, built on OpenTelemetry."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the OTLP collector and the customer API.
    Serve {
        /// The configuration file (TOML). Without it, the embedded defaults are used.
        #[arg(long, env = "CALLSCOPE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Run a simulated voice agent against an in-process server and print one call's
    /// customer view.
    Demo(callscope::demo::DemoArgs),
    /// Export a call's records (--call) or the calls list to a file (CSV, JSON Lines,
    /// Parquet, XLSX or a PDF report): the same file the API's export serves. Run it
    /// while the server is stopped.
    Export(Box<callscope::export::ExportArgs>),
    /// Send realistic call-log traffic to a collector at full speed (or a fixed rate)
    /// and report acknowledged records/s, acknowledgement latency and errors.
    Loadgen(callscope::loadgen::LoadgenArgs),
    /// Manage customer API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key for a tenant. The key is printed once; only its hash is stored.
    Create {
        /// The tenant the key may read.
        #[arg(long)]
        tenant: String,
        /// The configuration file naming the database.
        #[arg(long, env = "CALLSCOPE_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn init_logging() {
    use tracing_subscriber::{EnvFilter, fmt, prelude::*};
    let filter =
        EnvFilter::try_from_env("CALLSCOPE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("CALLSCOPE_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let registry = tracing_subscriber::registry().with(filter);
    if json {
        registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .init();
    } else {
        registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .init();
    }
}

fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    Ok(Config::load(path, std::env::vars())?)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => {
            init_logging();
            let config = load_config(config.as_deref())?;
            let server = Server::start(&config).await?;
            shutdown_signal().await;
            tracing::info!("Shutting down: no new requests; committing what is in flight.");
            server.shutdown().await?;
            tracing::info!("Stopped cleanly.");
        }
        Command::Demo(args) => {
            callscope::demo::run(args).await?;
        }
        Command::Export(args) => {
            let bytes = callscope::export::run(&args).await?;
            if args.output != std::path::Path::new("-") {
                eprintln!("Wrote {} ({bytes} bytes).", args.output.display());
            }
        }
        Command::Loadgen(args) => {
            callscope::loadgen::run(args).await?;
        }
        Command::Keys {
            command: KeysCommand::Create { tenant, config },
        } => {
            let config = load_config(config.as_deref())?;
            let store = callscope_store::Store::open(&config.storage).with_context(|| {
                format!(
                    "opening {} (is a server running on it? stop it first)",
                    config.storage.path.display()
                )
            })?;
            let key = callscope::keys::create(&store, &tenant).await?;
            store.shutdown().await?;
            println!("{key}");
            eprintln!(
                "Created an API key for tenant `{tenant}`. It is shown only this once; callscope keeps only its SHA-256.\n\
                 Use it as `Authorization: Bearer {key}`."
            );
        }
    }
    Ok(())
}
