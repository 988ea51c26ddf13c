//! Intentionally empty. See the `[build-dependencies]` note in Cargo.toml: they exist
//! only to pin host-side features.

fn main() {}
