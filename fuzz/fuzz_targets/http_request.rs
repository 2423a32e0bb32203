//! Arbitrary bytes as an HTTP request head: `route` must never panic, and what it returns must be
//! something the loop can act on safely.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickcast::net::http::{route, Route};

/// The server's default `--max-header-bytes`.
const MAX_HEADER_BYTES: usize = 8192;

fuzz_target!(|data: &[u8]| {
    match route(data, MAX_HEADER_BYTES) {
        // "Read more" is only ever said below the limit, so the read buffer stays bounded.
        Ok(None) => assert!(
            data.len() < MAX_HEADER_BYTES,
            "Partial at {} bytes",
            data.len()
        ),
        Ok(Some(Route::Upgrade { key, head_len, .. })) => {
            // The loop hands `buf[head_len..]` to the WebSocket as early frames.
            assert!(
                head_len <= data.len(),
                "head_len {head_len} > {}",
                data.len()
            );
            assert!(head_len <= MAX_HEADER_BYTES);
            assert!(!key.is_empty());
            // The head is self-contained: the same bytes without what follows route the same way.
            let again = route(&data[..head_len], MAX_HEADER_BYTES);
            assert!(
                matches!(&again, Ok(Some(Route::Upgrade { head_len: h, .. })) if *h == head_len),
                "head alone routes as {again:?}"
            );
        }
        Ok(Some(_)) => {}
        Err(refusal) => assert!(
            (400..600).contains(&refusal.status) && !refusal.why.is_empty(),
            "{refusal:?}"
        ),
    }
});
