//! Decompression: gzip and zstd streams, corrupt or bombs, never panic and never yield
//! more than the limit.
#![no_main]

use bytes::Bytes;
use callscope_otlp::decode::{self, DecodeError, Encoding};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&head, body)) = data.split_first() else {
        return;
    };
    let encoding = match head % 3 {
        0 => Encoding::Gzip,
        1 => Encoding::Zstd,
        _ => Encoding::Identity,
    };
    // Limits from 0 bytes to 1 MiB, chosen by the input.
    let limit = (usize::from(head) * 4099) % (1 << 20);
    match decode::decompress(Bytes::copy_from_slice(body), encoding, limit) {
        Ok(out) => assert!(out.len() <= limit, "{} bytes over a {limit} limit", out.len()),
        Err(DecodeError::TooLarge { limit: l }) => assert_eq!(l, limit),
        Err(_) => {}
    }
});
