//! `callscope export`: the customer API's export files (a call's records with
//! `--call`, else the calls list), written straight from the database file while no
//! server has it open.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};
use callscope_model::{Category, Level};
use callscope_query::{CallFilterParams, QueryError};
use callscope_store::{
    CallFilter, ExportFormat, ExportStream, LogFilter, Order, Store, StoreConfig,
};

use crate::Config;

/// `callscope export`'s arguments.
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Record filters (with --call)")]
pub struct ExportArgs {
    /// The tenant whose data is exported.
    #[arg(long, help_heading = "Export")]
    pub tenant: String,
    /// Export this call's records. Without it, the tenant's calls are exported (one
    /// row per call, newest first).
    #[arg(long, help_heading = "Export", conflicts_with = "CallFilterParams")]
    pub call: Option<String>,
    /// `csv`, `jsonl`, `parquet`, `xlsx` or `pdf`. Without it, the output file's
    /// extension decides.
    #[arg(long, value_parser = parse_format, help_heading = "Export")]
    pub format: Option<ExportFormat>,
    /// The file to write (replaced only once the export is complete); `-` for
    /// standard output.
    #[arg(
        short = 'o',
        long = "output",
        value_name = "FILE",
        help_heading = "Export"
    )]
    pub output: PathBuf,
    /// The configuration file naming the database.
    #[arg(long, env = "CALLSCOPE_CONFIG", help_heading = "Export")]
    pub config: Option<PathBuf>,

    /// Only these categories (comma-separated).
    #[arg(long, value_delimiter = ',', requires = "call")]
    pub category: Vec<Category>,
    /// Only these levels (comma-separated).
    #[arg(long, value_delimiter = ',', requires = "call")]
    pub level: Vec<Level>,
    /// Only these event codes (comma-separated).
    #[arg(long, value_delimiter = ',', requires = "call")]
    pub event: Vec<String>,
    /// Only records at this level or above.
    #[arg(long, requires = "call")]
    pub min_level: Option<Level>,
    /// `asc` (oldest first, the default) or `desc`.
    #[arg(long, value_parser = parse_order, requires = "call")]
    pub order: Option<Order>,

    /// The calls list's filters, spelled and checked as in the API.
    #[command(flatten)]
    pub calls: CallFilterParams,
}

fn parse_format(s: &str) -> Result<ExportFormat, callscope_store::UnknownFormat> {
    s.parse()
}

/// `--order`, through the API's own parser.
fn parse_order(s: &str) -> Result<Order, QueryError> {
    callscope_query::parse_order(Some(s), "--order")
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
                    "pass --format csv|jsonl|parquet|xlsx|pdf (the extension of {} names no format)",
                    self.output.display()
                )
            })
    }

    /// The call filters (the calls export), validated by the API's parser.
    ///
    /// # Errors
    /// A filter the API would refuse with 422, with the API's message.
    pub fn call_filter(&self) -> Result<CallFilter, QueryError> {
        self.calls.parse()
    }

    /// The record filters given (with `--call`), as the API's parameter names and
    /// values, for a report's heading.
    fn applied_record_filters(&self) -> Vec<(String, String)> {
        let join = |v: Vec<String>| v.join(",");
        [
            (
                "category",
                join(
                    self.category
                        .iter()
                        .map(|c| c.as_str().to_owned())
                        .collect(),
                ),
            ),
            (
                "level",
                join(self.level.iter().map(|l| l.as_str().to_owned()).collect()),
            ),
            ("event", join(self.event.clone())),
            (
                "min_level",
                self.min_level
                    .map(|l| l.as_str().to_owned())
                    .unwrap_or_default(),
            ),
            (
                "order",
                self.order
                    .map(|o| if o == Order::Asc { "asc" } else { "desc" }.to_owned())
                    .unwrap_or_default(),
            ),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// The record filters (with `--call`).
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
    if storage.backend != callscope_store::Backend::Ducklake && !path.exists() {
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
        if matches!(e, callscope_store::Error::Locked(_)) {
            anyhow::anyhow!(
                "{} is in use by another process, probably a running `callscope serve`. \
                 DuckDB lets one process open a database file: stop the server and run the \
                 export again, or download the same file from the running server: \
                 GET /v1/calls/{{call_id}}/logs/export or GET /v1/calls/export",
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
    // Checked before the database is opened, so a typo fails fast.
    let call_filter = args.call_filter()?;
    let config = Config::load(args.config.as_deref(), std::env::vars())?;
    let store = open_store(&config.storage)?;
    let result = async {
        let stream = match &args.call {
            Some(call) => store
                .export_call_logs(
                    &args.tenant,
                    call,
                    args.filter(),
                    args.order.unwrap_or(Order::Asc),
                    format,
                    &args.applied_record_filters(),
                )
                .await
                .context("reading the call's records")?
                .with_context(|| format!("tenant `{}` has no call `{call}`", args.tenant))?,
            None => store
                .export_calls(&args.tenant, &call_filter, format, &args.calls.applied())
                .await
                .context("reading the calls")?,
        };
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
    use callscope_model::Timestamp;
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
        assert_eq!(a.order, Some(Order::Desc));
        let f = a.filter();
        assert_eq!(f.levels, [Level::Error, Level::Critical]);
        assert_eq!(f.categories, [Category::Agent]);
        assert_eq!(f.events, ["A", "B"]);
        assert_eq!(f.min_level, Some(Level::Warning));

        let a = parse(&[
            "--tenant", "acme", "--call", "c1", "-o", "-", "--format", "jsonl",
        ])
        .unwrap();
        assert_eq!((a.format().unwrap(), a.order), (ExportFormat::Jsonl, None));
        let a = parse(&["--tenant", "acme", "--call", "c1", "-o", "out.txt"]).unwrap();
        assert!(
            a.format().is_err(),
            "no format and an extension that names none"
        );
        assert!(parse(&["--tenant", "a", "--call", "c", "-o", "x", "--format", "xls"]).is_err());
        assert!(parse(&["--tenant", "a", "--call", "c", "-o", "x", "--level", "LOUD"]).is_err());
        assert!(parse(&["--tenant", "a", "--call", "c", "-o", "x", "--order", "up"]).is_err());

        // Without --call: the calls export, with the calls list's filters.
        let a = parse(&[
            "--tenant",
            "acme",
            "-o",
            "calls.csv",
            "--status",
            "Failed,missed",
            "--direction",
            "inbound",
            "--min-duration-ms",
            "1000",
            "--started-after",
            "2026-11-21T10:00:00Z",
            "--agent-id",
            "a1,a2",
            "--from-number",
            "+1 (415) 555",
            "--max-billed-duration-ms",
            "60000",
            "--q",
            "c12",
        ])
        .unwrap();
        assert_eq!(a.call, None);
        let f = a.call_filter().unwrap();
        assert_eq!(f.statuses, ["failed", "missed"]);
        assert_eq!(f.directions, ["inbound"]);
        assert_eq!(f.agent_ids, ["a1", "a2"]);
        assert_eq!(f.duration.min_ms, Some(1000));
        assert_eq!(f.billed_duration.max_ms, Some(60_000));
        assert_eq!(f.from_number.as_deref(), Some("1415555"));
        assert_eq!(f.search.map(|s| s.call_id_prefix).as_deref(), Some("c12"));
        assert_eq!(
            f.started_after,
            Some(Timestamp::parse_rfc3339("2026-11-21T10:00:00Z").unwrap())
        );
        // Record filters need a call; call filters exclude one.
        assert!(parse(&["--tenant", "a", "-o", "x.csv", "--level", "ERROR"]).is_err());
        assert!(parse(&["--tenant", "a", "-o", "x.csv", "--order", "asc"]).is_err());
        assert!(
            parse(&[
                "--tenant", "a", "--call", "c", "-o", "x.csv", "--status", "failed"
            ])
            .is_err()
        );
        assert!(parse(&["--tenant", "a", "--call", "c", "-o", "x.csv", "--q", "c1"]).is_err());
        // Values the API refuses, refused with the API's message naming the parameter.
        for (flag, value, name) in [
            ("--direction", "sideways", "direction"),
            ("--started-after", "yesterday", "started_after"),
            ("--min-duration-ms", "-5", "min_duration_ms"),
            (
                "--min-ringing-duration-ms",
                "soon",
                "min_ringing_duration_ms",
            ),
            ("--to-number", "abc", "to_number"),
        ] {
            let arg = format!("{flag}={value}");
            let a = parse(&["--tenant", "a", "-o", "x.csv", &arg]).unwrap();
            let e = a.call_filter().unwrap_err();
            assert!(e.to_string().contains(&format!("`{name}`")), "{flag}: {e}");
        }
    }
}
