//! The `callscope` binary's pieces: configuration, the server that wires collector,
//! store and API together, and the `demo`, `keys`, `export` and `loadgen` commands.
//!
//! The binary itself (`main.rs`) only parses arguments and calls into here, so tests
//! and the demo run exactly what `callscope serve` runs.

pub mod config;
pub mod demo;
pub mod export;
pub mod keys;
pub mod loadgen;
pub mod server;

pub use config::Config;
pub use server::Server;

/// Every allocation in a process that links callscope goes to jemalloc: Rust's through
/// this allocator, DuckDB's because jemalloc also provides `malloc` and `free`. Against
/// glibc's allocator it spends about a fifth less CPU per ingested record (BENCHMARKS.md,
/// "Peak RSS and the allocator").
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
