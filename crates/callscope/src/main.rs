//! `callscope`: the OpenTelemetry collector and customer API for voice-agent call logs.

use std::path::PathBuf;

use callscope::{Config, Server};
use clap::{Parser, Subcommand};

/// Every allocation of `callscope` goes to jemalloc: Rust's through this allocator,
/// DuckDB's because jemalloc also provides `malloc` and `free`. It costs less CPU per
/// ingested record than glibc's allocator and returns freed memory sooner (BENCHMARKS.md,
/// "Peak RSS and the allocator"). Declared here, not in the library, so tests and
/// programs that use the library keep their own allocator.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it starts: a background thread hands pages freed for
/// 250 ms back to the OS, so RSS follows what is in use instead of its peak. The
/// `MALLOC_CONF` environment variable overrides them.
#[allow(unsafe_code, non_upper_case_globals)]
// SAFETY: jemalloc reads this symbol once, as a NUL-terminated C string; the value is
// a `'static` byte string ending in NUL, and nothing writes it.
#[unsafe(export_name = "malloc_conf")]
static malloc_conf: &[u8; 59] = b"background_thread:true,dirty_decay_ms:250,muzzy_decay_ms:0\0";

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
    /// Manage customer API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key for a tenant. The key is printed once; only its hash is stored. A
    /// running server on the same database starts accepting it within seconds.
    Create {
        /// The tenant the key may read.
        #[arg(long)]
        tenant: String,
        /// The configuration file naming the database.
        #[arg(long, env = "CALLSCOPE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// List the stored keys: fingerprint, tenant, creation time and last use (never the
    /// key). Keys from the configuration file are not listed.
    List {
        /// The configuration file naming the database.
        #[arg(long, env = "CALLSCOPE_CONFIG")]
        config: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a stored key by its fingerprint (as `keys list` shows it). A running
    /// server refuses it within seconds.
    Revoke {
        /// The key's fingerprint: at least 8 of the hex digits `keys list` shows.
        fingerprint: String,
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

async fn keys(command: KeysCommand) -> anyhow::Result<()> {
    use callscope::keys::{Answer, Request, format_list};
    match command {
        KeysCommand::Create { tenant, config } => {
            let config = load_config(config.as_deref())?;
            let (key, fingerprint) = callscope::keys::create(&config, &tenant).await?;
            println!("{key}");
            eprintln!(
                "Created an API key for tenant `{tenant}` (fingerprint {fingerprint}). It is shown only this once; callscope keeps only its SHA-256.\n\
                 Use it as `Authorization: Bearer {key}`."
            );
        }
        KeysCommand::List { config, json } => {
            let config = load_config(config.as_deref())?;
            match callscope::keys::run(&config, &Request::List).await? {
                Answer::Keys { keys } if json => {
                    println!("{}", serde_json::to_string_pretty(&keys)?);
                }
                Answer::Keys { keys } => print!("{}", format_list(&keys)),
                Answer::Failed { message } => anyhow::bail!(message),
                other => anyhow::bail!("unexpected answer: {other:?}"),
            }
        }
        KeysCommand::Revoke {
            fingerprint,
            config,
        } => {
            let config = load_config(config.as_deref())?;
            match callscope::keys::run(&config, &Request::Revoke { fingerprint }).await? {
                Answer::Revoked { key } => eprintln!(
                    "Revoked key {} of tenant `{}`. A running server refuses it within seconds.",
                    key.fingerprint, key.tenant
                ),
                Answer::Failed { message } => anyhow::bail!(message),
                other => anyhow::bail!("unexpected answer: {other:?}"),
            }
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config } => {
            init_logging();
            let config = load_config(config.as_deref())?;
            let mut server = Server::start(&config).await?;
            let failure = tokio::select! {
                () = shutdown_signal() => None,
                e = server.failure() => Some(e),
            };
            if let Some(failure) = failure {
                tracing::error!(error = %failure, "A part of callscope stopped; shutting down.");
                if let Err(e) = server.shutdown().await {
                    tracing::error!(error = %format!("{e:#}"), "Shutting down after the failure failed too.");
                }
                return Err(failure.context("callscope stopped because a part of it failed"));
            }
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
        Command::Keys { command } => keys(command).await?,
    }
    Ok(())
}
