//! Arbitrary bytes as an HTTP request head: `parse` must never panic, and what it returns must be
//! something the loop can act on safely; and the loop's incremental reader (`HeadBuf`, which parses only
//! once a blank line may have arrived) must give the same answer however the bytes are cut into reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickcast::net::http::{parse, HeadBuf, Refusal, Request};

/// The server's default `--max-header-bytes`.
const MAX_HEADER_BYTES: usize = 8192;

/// Feeds `data` to a [`HeadBuf`] the way the loop does: read by read (cut where `cuts` says), at most one
/// byte past the limit in all, asking for a parse after each read until there is an answer.
fn fed(
    data: &[u8],
    mut cuts: impl Iterator<Item = usize>,
) -> Result<Option<Request>, Refusal<'static>> {
    let data = &data[..data.len().min(MAX_HEADER_BYTES + 1)];
    let mut buf = HeadBuf::default();
    let mut at = 0;
    while at < data.len() {
        let n = cuts.next().unwrap_or(data.len()).clamp(1, data.len() - at);
        buf.extend(&data[at..at + n]);
        at += n;
        let answer = buf.parse(MAX_HEADER_BYTES);
        if !matches!(answer, Ok(None)) {
            return answer;
        }
    }
    Ok(None)
}

fuzz_target!(|data: &[u8]| {
    // The first byte (when there is one) seeds the cuts; all of it is also the request.
    let seed = data.first().copied().unwrap_or(0);
    let whole = fed(data, std::iter::empty());
    let by_byte = fed(data, std::iter::repeat(1));
    let mut state = u32::from(seed) | 1;
    let by_chunks = fed(
        data,
        std::iter::from_fn(move || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            Some((state % 64) as usize + 1)
        }),
    );
    assert_eq!(whole, by_byte, "fed whole vs byte by byte");
    assert_eq!(whole, by_chunks, "fed whole vs in chunks (seed {seed})");

    match parse(data, MAX_HEADER_BYTES) {
        // "Read more" is only ever said below the limit, so the read buffer stays bounded.
        Ok(None) => assert!(
            data.len() < MAX_HEADER_BYTES,
            "Partial at {} bytes",
            data.len()
        ),
        Ok(Some(Request {
            head_len, upgrade, ..
        })) => {
            // The loop hands `buf[head_len..]` to the WebSocket as early frames.
            assert!(
                head_len <= data.len(),
                "head_len {head_len} > {}",
                data.len()
            );
            assert!(head_len <= MAX_HEADER_BYTES);
            if let Ok(upgrade) = &upgrade {
                assert!(!upgrade.key.is_empty());
            }
            // The head is self-contained: the same bytes without what follows parse the same way.
            let again = parse(&data[..head_len], MAX_HEADER_BYTES);
            assert!(
                matches!(&again, Ok(Some(r)) if r.head_len == head_len && r.upgrade == upgrade),
                "head alone parses as {again:?}"
            );
        }
        Err(refusal) => assert!(
            (400..600).contains(&refusal.status) && !refusal.why.is_empty(),
            "{refusal:?}"
        ),
    }
});
