//! `callscope export`: the customer API's export files, written straight from the
//! database file (while no server has it open).

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use callscope_model::{Category, Level};
use callscope_store::{ExportFormat, ExportStream, LogFilter, Order, Store, StoreConfig};

use crate::Config;

/// `callscope export`'s arguments.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The tenant whose data is exported.
    #[arg(long)]
    pub tenant: String,
    /// The call whose records are exported.
    #[arg(long)]
    pub call: String,
    /// `csv`, `jsonl`, `parquet` or `xlsx`. Without it, the output file's extension
    /// decides.
    #[arg(long, value_parser = parse_format)]
    pub format: Option<ExportFormat>,
    /// Only these categories (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub category: Vec<Category>,
    /// Only these levels (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub level: Vec<Level>,
    /// Only these event codes (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub event: Vec<String>,
    /// Only records at this level or above.
    #[arg(long)]
    pub min_level: Option<Level>,
    /// `asc` (oldest first, the default) or `desc`.
    #[arg(long, default_value = "asc", value_parser = parse_order)]
    pub order: Order,
    /// The file to write (replaced only once the export is complete); `-` for
    /// standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    /// The configuration file naming the database.
    #[arg(long, env = "CALLSCOPE_CONFIG")]
    pub config: Option<PathBuf>,
}

fn parse_format(s: &str) -> Result<ExportFormat, callscope_store::UnknownFormat> {
    s.parse()
}

fn parse_order(s: &str) -> Result<Order, String> {
    match s.to_ascii_lowercase().as_str() {
        "asc" => Ok(Order::Asc),
        "desc" => Ok(Order::Desc),
        _ => Err(format!("`{s}` is not `asc` or `desc`")),
    }
}

impl ExportArgs {
    /// The format asked for, else the one the output file's extension names.
    ///
    /// # Errors
    /// Neither names a format.
    pub fn format(&self) -> anyhow::Result<ExportFormat> {
        if let Some(f) = self.format {
            return Ok(f);
        }
        self.output
            .extension()
            .and_then(|e| e.to_str())
            .and_then(|e| e.parse().ok())
            .with_context(|| {
                format!(
                    "pass --format csv|jsonl|parquet|xlsx (the extension of {} names no format)",
                    self.output.display()
                )
            })
    }

    /// The record filters.
    #[must_use]
    pub fn filter(&self) -> LogFilter {
        LogFilter {
            categories: self.category.clone(),
            levels: self.level.clone(),
            events: self.event.clone(),
            min_level: self.min_level,
        }
    }
}

/// Opens the database for an export: it must exist, and no server may hold it.
///
/// # Errors
/// The file is missing, locked by another process, or unreadable.
pub fn open_store(storage: &StoreConfig) -> anyhow::Result<Store> {
    let path = &storage.path;
    if !path.exists() {
        bail!(
            "there is no database at {} (the [storage] path of the configuration; pass --config)",
            path.display()
        );
    }
    let config = StoreConfig {
        // An export only reads: no retention purge from here.
        retention_days: 0,
        ..storage.clone()
    };
    Store::open(&config).map_err(|e| {
        if e.to_string().contains("lock") {
            anyhow::anyhow!(
                "{} is in use by another process, probably a running `callscope serve`. \
                 DuckDB lets one process open a database file: stop the server and run the \
                 export again, or download the same file from the running server with \
                 GET /v1/calls/{{call_id}}/logs/export?format=…",
                path.display()
            )
        } else {
            anyhow::Error::new(e).context(format!("opening {}", path.display()))
        }
    })
}

/// Runs `callscope export`: writes the file and returns how many bytes it has.
///
/// # Errors
/// Bad arguments, the database cannot be opened, the tenant has no such call, or the
/// file cannot be written.
pub async fn run(args: &ExportArgs) -> anyhow::Result<u64> {
    let format = args.format()?;
    anyhow::ensure!(!args.tenant.trim().is_empty(), "--tenant must not be empty");
    let config = Config::load(args.config.as_deref(), std::env::vars())?;
    let store = open_store(&config.storage)?;
    let result = async {
        let stream = store
            .export_call_logs(&args.tenant, &args.call, args.filter(), args.order, format)
            .await
            .context("reading the call's records")?
            .with_context(|| format!("tenant `{}` has no call `{}`", args.tenant, args.call))?;
        write_out(stream, &args.output).await
    }
    .await;
    store.shutdown().await.context("closing the database")?;
    result
}

/// Writes the export to `out` (`-`: standard output) and returns its size.
async fn write_out(mut stream: ExportStream, out: &Path) -> anyhow::Result<u64> {
    let mut written = 0u64;
    if out == Path::new("-") {
        let mut stdout = std::io::stdout().lock();
        while let Some(chunk) = stream.next_chunk().await {
            let chunk = chunk.context("exporting")?;
            stdout
                .write_all(&chunk)
                .context("writing to standard output")?;
            written += chunk.len() as u64;
        }
        stdout.flush()?;
        return Ok(written);
    }
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // Written beside the target and renamed over it when complete, so a failed export
    // never leaves a partial file under the requested name.
    let mut tmp = tempfile::Builder::new()
        .prefix(".callscope-export-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    while let Some(chunk) = stream.next_chunk().await {
        let chunk = chunk.context("exporting")?;
        tmp.write_all(&chunk)
            .with_context(|| format!("writing {}", out.display()))?;
        written += chunk.len() as u64;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(out)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: ExportArgs,
    }

    fn parse(args: &[&str]) -> Result<ExportArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("export").chain(args.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn arguments() {
        let a = parse(&[
            "--tenant",
            "acme",
            "--call",
            "c1",
            "-o",
            "out.XLSX",
            "--level",
            "ERROR,critical",
            "--category",
            "AGENT",
            "--event",
            "A,B",
            "--min-level",
            "warning",
            "--order",
            "desc",
        ])
        .unwrap();
        assert_eq!(a.format().unwrap(), ExportFormat::Xlsx);
        assert_eq!(a.order, Order::Desc);
        let f = a.filter();
        assert_eq!(f.levels, [Level::Error, Level::Critical]);
        assert_eq!(f.categories, [Category::Agent]);
        assert_eq!(f.events, ["A", "B"]);
        assert_eq!(f.min_level, Some(Level::Warning));

        let a = parse(&[
            "--tenant", "acme", "--call", "c1", "-o", "-", "--format", "jsonl",
        ])
        .unwrap();
        assert_eq!(
            (a.format().unwrap(), a.order),
            (ExportFormat::Jsonl, Order::Asc)
        );
        let a = parse(&["--tenant", "acme", "--call", "c1", "-o", "out.txt"]).unwrap();
        assert!(
            a.format().is_err(),
            "no format and an extension that names none"
        );
        assert!(parse(&["--tenant", "a", "--call", "c", "-o", "x", "--format", "xls"]).is_err());
        assert!(parse(&["--tenant", "a", "--call", "c", "-o", "x", "--level", "LOUD"]).is_err());
        assert!(parse(&["--tenant", "a", "--call", "c", "-o", "x", "--order", "up"]).is_err());
    }
}
