//! The pure core of the callscope collector: OTLP request bodies in, customer records out.
//!
//! - [`decode`]: decompression (gzip, zstd) capped at the request limit, and protobuf or
//!   OTLP JSON decoding.
//! - [`visibility`]: the customer-visibility filter that decides, fail closed, which log
//!   records customers may see and what of them.
//!
//! Nothing here does I/O or touches storage, so it builds on its own: the receivers in
//! `callscope-collector` use it, and so do the fuzz targets in `fuzz/`. The collector
//! re-exports both modules, so `callscope_collector::visibility` and
//! `callscope_collector::decode` are the same items.

pub mod decode;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod visibility;
