//! HTTP/1.1 on the WebSocket port: just enough to parse a request head and answer it, with httparse on
//! the bytes read so far, never blocking. Every answer closes the connection (`Connection: close`), except
//! a successful upgrade, which turns the connection into a WebSocket. Which paths exist is the
//! application's business (`server/routes.rs`); this module knows requests, not routes.

/// Most headers a request may carry; more is answered with 431.
const HEADERS_MAX: usize = 48;

/// A complete request head, as far as the server looks at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The request target as sent: the path, then `?` and the query if any.
    pub target: String,
    /// Bytes of the head; what follows in the buffer is the client's first WebSocket bytes.
    pub head_len: usize,
    /// The `Origin` header, which browsers send on cross-origin requests and every WebSocket upgrade.
    pub origin: Option<String>,
    /// The token of an `Authorization: Bearer TOKEN` header (the dashboard's; never logged).
    pub bearer: Option<String>,
    /// A proxy forwarded it: the request has a `Forwarded`, `X-Forwarded-For`, `-Host` or `-Proto`,
    /// `X-Real-IP` or `Via` header (a proxy that adds none is not seen: behind one, use a token).
    pub forwarded: bool,
    /// The WebSocket upgrade headers, checked; or why this request is no valid upgrade.
    pub upgrade: Result<Upgrade, Refusal<'static>>,
    /// The body's length (`Content-Length`); `Err` for a length that is no number, or a body in
    /// chunks (`Transfer-Encoding`), which the server does not read.
    pub body_len: Result<Option<usize>, Refusal<'static>>,
}

/// What a valid upgrade request carries that the answer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// `Sec-WebSocket-Key`, to answer with.
    pub key: String,
    /// The `Origin` header, which browsers always send.
    pub origin: Option<String>,
}

impl Request {
    /// The target without its query.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    /// The query's `name=value` pairs as written (not percent-decoded), in order; a pair without `=` has
    /// an empty value.
    pub fn query(&self) -> impl Iterator<Item = (&str, &str)> {
        let query = self.target.split_once('?').map_or("", |(_, q)| q);
        query
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| kv.split_once('=').unwrap_or((kv, "")))
    }
}

/// An HTTP error answer: status and the short body saying why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal<'a> {
    pub status: u16,
    pub why: &'a str,
}

impl Refusal<'static> {
    pub const fn new(status: u16, why: &'static str) -> Self {
        Refusal { status, why }
    }
}

/// Parses the request head in `buf`. `Ok(None)`: incomplete, read more (the caller enforces the size limit
/// on what it buffers and the handshake timeout).
pub fn parse(buf: &[u8], max_header_bytes: usize) -> Result<Option<Request>, Refusal<'static>> {
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= max_header_bytes => {
            return Err(Refusal::new(431, "request head too large"))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Refusal::new(431, "too many headers")),
        Err(_) => return Err(Refusal::new(400, "malformed HTTP request")),
    };
    if head_len > max_header_bytes {
        return Err(Refusal::new(431, "request head too large"));
    }
    let origin = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("origin"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .map(|o| o.trim().to_string());
    let bearer = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("authorization"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_string())
        });
    let forwarded = req.headers.iter().any(|h| {
        [
            "forwarded",
            "x-forwarded-for",
            "x-forwarded-host",
            "x-forwarded-proto",
            "x-real-ip",
            "via",
        ]
        .iter()
        .any(|name| h.name.eq_ignore_ascii_case(name))
    });
    Ok(Some(Request {
        method: req.method.unwrap_or("").to_string(),
        target: req.path.unwrap_or("/").to_string(),
        head_len,
        origin,
        bearer,
        forwarded,
        body_len: body_len(req.headers),
        upgrade: upgrade(req.headers),
    }))
}

/// A request head being read, with how far it has been scanned for its end, so that a head trickled in
/// byte by byte costs O(n), not O(n^2): httparse runs only when the bytes that just arrived (with the two
/// before them) hold a blank line (`\n\r\n` or `\n\n`; httparse accepts bare LF), or when the head
/// reached the size limit.
#[derive(Debug, Default)]
pub struct HeadBuf {
    bytes: Vec<u8>,
    /// Bytes already scanned for a blank line.
    scanned: usize,
    /// Bytes before the first one that is not CR or LF: httparse skips such leading empty lines, so a
    /// blank line among them does not end the head. `None` while every byte so far is CR or LF.
    start: Option<usize>,
    /// Times httparse ran on this head (for tests: a trickled head is parsed once).
    parses: u32,
    /// The head once complete (a body may still be arriving behind it): not parsed again. Boxed, so a
    /// connection reading its head stays small until it has one.
    complete: Option<Box<Request>>,
}

impl HeadBuf {
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    pub fn parses(&self) -> u32 {
        self.parses
    }

    /// Appends bytes just read; the caller bounds the total (`--max-header-bytes` plus one).
    pub fn extend(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    /// [`parse`] on what has arrived, parsing only when the head may be complete. `Ok(None)`: read more.
    /// Only the first `max_header_bytes` are parsed, so the answer does not depend on how the bytes were
    /// cut into reads (the `http_request` fuzz target checks it).
    pub fn parse(&mut self, max_header_bytes: usize) -> Result<Option<Request>, Refusal<'static>> {
        if let Some(head) = &self.complete {
            return Ok(Some((**head).clone()));
        }
        if !self.may_be_complete() && self.bytes.len() < max_header_bytes {
            return Ok(None);
        }
        self.parses += 1;
        let head = &self.bytes[..self.bytes.len().min(max_header_bytes)];
        let parsed = parse(head, max_header_bytes);
        if let Ok(Some(head)) = &parsed {
            self.complete = Some(Box::new(head.clone()));
        }
        parsed
    }

    /// Scans the bytes not scanned yet (and the two before them, so a blank line split across reads is
    /// found) for a blank line after the first request byte.
    fn may_be_complete(&mut self) -> bool {
        let from = self.scanned;
        self.scanned = self.bytes.len();
        let start = match self.start {
            Some(start) => start,
            None => match self.bytes[from..]
                .iter()
                .position(|b| *b != b'\r' && *b != b'\n')
            {
                Some(i) => *self.start.insert(from + i),
                None => return false,
            },
        };
        let window = &self.bytes[from.saturating_sub(2).max(start)..];
        window.windows(2).any(|w| w == b"\n\n") || window.windows(3).any(|w| w == b"\n\r\n")
    }
}

/// The length of a request's body, if it has one; chunked bodies are refused (411), and so are two
/// lengths that disagree or one that is no number (400): a body's end must be unambiguous.
fn body_len(headers: &[httparse::Header<'_>]) -> Result<Option<usize>, Refusal<'static>> {
    if headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
    {
        return Err(Refusal::new(411, "send the body with a Content-Length"));
    }
    let mut len = None;
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
    {
        let n = std::str::from_utf8(h.value)
            .ok()
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<usize>().ok())
            .ok_or(Refusal::new(400, "malformed Content-Length"))?;
        if len.is_some_and(|l| l != n) {
            return Err(Refusal::new(400, "malformed Content-Length"));
        }
        len = Some(n);
    }
    Ok(len)
}

/// The upgrade headers of a request, or why they are no valid WebSocket upgrade.
fn upgrade(headers: &[httparse::Header<'_>]) -> Result<Upgrade, Refusal<'static>> {
    let header = |name: &str| {
        headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    };
    let has_token = |name: &str, token: &str| {
        header(name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return Err(Refusal::new(
            426,
            "this path speaks WebSocket: send an upgrade request",
        ));
    }
    if header("sec-websocket-version").map(str::trim) != Some("13") {
        return Err(Refusal::new(426, "unsupported WebSocket version: use 13"));
    }
    match header("sec-websocket-key").map(str::trim) {
        Some(key) if !key.is_empty() => Ok(Upgrade {
            key: key.to_string(),
            origin: header("origin").map(|o| o.trim().to_string()),
        }),
        _ => Err(Refusal::new(400, "missing Sec-WebSocket-Key")),
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        403 => "Forbidden",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Appends a complete response that closes the connection.
pub fn write_response(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    body: &[u8],
    extra_headers: &str,
) {
    use std::io::Write;
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n{extra_headers}\r\n",
        reason_phrase(status),
        body.len()
    );
    out.extend_from_slice(body);
}

/// `Retry-After` of a 503 (capacity, draining) or a 429 (a per-address limit), in seconds, unless the
/// caller knows better ([`write_refusal_retry_after`]).
pub const RETRY_AFTER_S: u64 = 5;

/// Appends an error answer with a one-line text body.
pub fn write_refusal(out: &mut Vec<u8>, refusal: &Refusal) {
    write_refusal_retry_after(out, refusal, RETRY_AFTER_S)
}

/// [`write_refusal`], with `Retry-After: retry_after_s` on a 429 or a 503.
pub fn write_refusal_retry_after(out: &mut Vec<u8>, refusal: &Refusal, retry_after_s: u64) {
    write_refusal_with(out, refusal, retry_after_s, "")
}

/// [`write_refusal_retry_after`] with `more_headers` (each ending in CRLF) besides.
pub fn write_refusal_with(
    out: &mut Vec<u8>,
    refusal: &Refusal,
    retry_after_s: u64,
    more_headers: &str,
) {
    let mut extra = match refusal.status {
        405 if refusal.why.ends_with("POST") => "Allow: POST, OPTIONS\r\n".to_string(),
        405 => "Allow: GET\r\n".to_string(),
        426 => "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n".to_string(),
        429 | 503 => format!("Retry-After: {retry_after_s}\r\n"),
        _ => String::new(),
    };
    extra.push_str(more_headers);
    let body = format!(
        "{} {}: {}\n",
        refusal.status,
        reason_phrase(refusal.status),
        refusal.why
    );
    write_response(
        out,
        refusal.status,
        "text/plain; charset=utf-8",
        body.as_bytes(),
        &extra,
    );
}

/// Appends the 101 answer to a WebSocket upgrade.
pub fn write_upgrade(out: &mut Vec<u8>, key: &str) {
    use std::io::Write;
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let _ = write!(
        out,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Option<Request>, Refusal<'static>> {
        parse(s.as_bytes(), 8192)
    }

    #[test]
    fn heads_and_refusals() {
        let req = p("GET /metrics?x=1&ticket=a.b&flag HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((req.method.as_str(), req.path()), ("GET", "/metrics"));
        let query: Vec<_> = req.query().collect();
        assert_eq!(query, [("x", "1"), ("ticket", "a.b"), ("flag", "")]);
        assert_eq!(req.upgrade.unwrap_err().status, 426);
        assert_eq!(p("GET /healthz HTTP/1.1\r\nHost: x\r\n"), Ok(None));
        assert_eq!(p("\x01\x02 junk\r\n\r\n").unwrap_err().status, 400);
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "a".repeat(9000));
        assert_eq!(p(&big).unwrap_err().status, 431);
        let upgrade = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
                       Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        let req = p(upgrade).unwrap().unwrap();
        assert_eq!(req.head_len, upgrade.len());
        assert_eq!(
            req.upgrade,
            Ok(Upgrade {
                key: "dGhlIHNhbXBsZSBub25jZQ==".into(),
                origin: None,
            })
        );
        let old = upgrade.replace("Version: 13", "Version: 8");
        assert_eq!(p(&old).unwrap().unwrap().upgrade.unwrap_err().status, 426);
    }

    /// Feeds `head` to a [`HeadBuf`] in pieces of `step` bytes; returns the path (or refusal status) and
    /// the parses it took.
    fn fed(head: &[u8], step: usize) -> (Result<Option<String>, u16>, u32) {
        let mut buf = HeadBuf::default();
        let mut answer = Ok(None);
        for piece in head.chunks(step) {
            buf.extend(piece);
            answer = buf
                .parse(8192)
                .map(|r| r.map(|r| r.path().to_string()))
                .map_err(|e| e.status);
            if !matches!(answer, Ok(None)) {
                break;
            }
        }
        (answer, buf.parses())
    }

    #[test]
    fn a_head_is_parsed_only_once_its_blank_line_may_have_arrived() {
        let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nUser-Agent: trickle\r\n\r\n";
        let health = Ok(Some("/healthz".to_string()));
        assert_eq!(fed(head, 1), (health.clone(), 1));
        assert_eq!(fed(head, 3), (health.clone(), 1));
        assert_eq!(fed(head, head.len()), (health, 1));
        // Bare LF, split across reads; leading empty lines (which httparse skips) do not count.
        assert_eq!(
            fed(b"\r\n\n\r\nGET /metrics HTTP/1.1\nHost: x\n\n", 1),
            (Ok(Some("/metrics".to_string())), 1)
        );
        // No blank line: one parse at the limit, and the answer is 431.
        let endless = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(9000));
        assert_eq!(fed(endless.as_bytes(), 1), (Err(431), 1));
        // Only newlines: never parsed before the limit.
        assert_eq!(fed(&[b'\n'; 8192], 1), (Err(431), 1));
    }

    #[test]
    fn upgrade_answer_carries_the_rfc_accept_key() {
        let mut out = Vec::new();
        write_upgrade(&mut out, "dGhlIHNhbXBsZSBub25jZQ==");
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
            "{text}"
        );
    }
}
