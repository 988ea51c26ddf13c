//! `callscope-loadgen`: sends realistic call-log traffic to a collector at full speed
//! (or a fixed rate) and reports acknowledged records/s, acknowledgement latency and
//! errors.

use callscope_bench::loadgen::{LoadgenArgs, run};
use clap::Parser as _;

#[derive(clap::Parser)]
#[command(
    name = "callscope-loadgen",
    version,
    about = "Send realistic call-log traffic to a callscope collector and measure what it acknowledges."
)]
struct Cli {
    #[command(flatten)]
    args: LoadgenArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    run(Cli::parse().args).await
}
