//! The `callscope` binary's pieces: configuration, the server that wires collector,
//! store and API together, and the `demo`, `keys` and `export` commands.
//!
//! The binary itself (`main.rs`) only parses arguments, picks the allocator and calls
//! into here, so tests and the demo run exactly what `callscope serve` runs.

pub mod config;
pub mod demo;
pub mod export;
pub mod keys;
pub mod server;

pub use config::Config;
pub use server::Server;
