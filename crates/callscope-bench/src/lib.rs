//! Tools that measure callscope, kept out of the product: the OTLP load generator
//! ([`loadgen`], also the `callscope-loadgen` binary) and DuckDB's raw Appender on the
//! rows the store writes ([`raw`]), which the benches in `benches/` use, and the start
//! of the server children they measure ([`child`]).

pub mod child;
pub mod loadgen;
pub mod raw;
