//! A bot's socket: a non-blocking TCP stream (opened with socket2 so options are set before the connect)
//! wrapped so that reads can be capped by a token bucket and every byte read is counted, plain or TLS
//! (`wss://`, `https://`).
//!
//! TLS is a rustls `ClientConnection` driven without ever blocking, as the server drives its own
//! (`src/net/tls.rs`): a read hands out plaintext rustls already holds, else takes ciphertext from the
//! socket (`read_tls`), decrypts it (`process_new_packets`) and tries again; a write encrypts into
//! rustls's buffer and pushes the records out (`write_tls`) as far as the socket takes them. The
//! handshake happens inside those calls: tungstenite's HTTP upgrade request is written at once, held by
//! rustls until the handshake is done, and the answer is read through the same calls, so a bot's
//! handshake costs its worker nothing while it waits. Bounds: rustls holds at most
//! [`TLS_BUFFER_LIMIT`] bytes unsent (past it a write says `WouldBlock`, and tungstenite's own bounded
//! buffer takes over); one read makes at most [`TLS_READS_PER_CALL`] socket reads while it finds no
//! plaintext, then says `WouldBlock` with [`BotStream::take_more`] set, so the owner reads again next
//! turn (an edge-triggered socket would not signal again for bytes still in it). The read cap of a slow
//! bot applies to the socket's bytes (the ciphertext), which is what the server sees being read, and
//! the byte counter counts them too.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;
use rustls::pki_types::ServerName;
use socket2::{Domain, Protocol, Socket, Type};

use crate::bucket::TokenBucket;

/// Bytes rustls may hold for a connection that the socket has not taken yet (ciphertext, and the
/// plaintext written before the handshake is done).
pub const TLS_BUFFER_LIMIT: usize = 32 * 1024;
/// Socket reads one `read` makes at most while it finds no plaintext (handshake records, tickets).
pub const TLS_READS_PER_CALL: usize = 16;

/// Starts a non-blocking connect to `addr`. `rcvbuf_bytes` shrinks the kernel's receive buffer (and so
/// the TCP window the server may fill) before the handshake, when it still counts.
pub fn dial(addr: SocketAddr, rcvbuf_bytes: Option<usize>) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    // Inputs are a few bytes each; Nagle would hold them back and add its delay to every latency.
    socket.set_nodelay(true)?;
    if let Some(bytes) = rcvbuf_bytes {
        socket.set_recv_buffer_size(bytes)?;
    }
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

/// Whether a connect started by [`dial`] has finished: `Ok(true)` connected, `Ok(false)` still going
/// (a spurious wake-up), `Err` refused or failed. Call on a writable event, as mio's docs say.
pub fn connected(sock: &TcpStream) -> io::Result<bool> {
    if let Some(e) = sock.take_error()? {
        return Err(e);
    }
    match sock.peer_addr() {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

/// A TLS error (the certificate was refused, the server broke the protocol), as the `io::Error` a
/// [`BotStream`] read or write returns (kind `InvalidData`): [`is_tls_error`] tells it from a socket's.
#[derive(Debug)]
pub struct TlsError(pub rustls::Error);

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TLS: {}", self.0)
    }
}

impl std::error::Error for TlsError {}

/// Whether `e` is a [`TlsError`].
pub fn is_tls_error(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<TlsError>())
}

/// The stream tungstenite reads and writes through.
#[derive(Debug)]
pub struct BotStream {
    pub sock: TcpStream,
    /// `wss://` and `https://`: the TLS session over `sock`; `None`: plain.
    tls: Option<Box<rustls::ClientConnection>>,
    /// The read cap of a slow bot; applied only once [`BotStream::cap_reads`] is called, so the HTTP
    /// upgrade is never throttled into tungstenite's small-packet attack check.
    bucket: Option<TokenBucket>,
    capping: bool,
    /// Set when a read was refused for want of tokens (not for want of data): the owner must retry once
    /// the bucket has refilled, because the socket will not signal again for bytes already waiting.
    pub starved: bool,
    /// Set when a TLS read stopped at [`TLS_READS_PER_CALL`] socket reads: see [`BotStream::take_more`].
    more: bool,
    /// Bytes read from the socket since the owner last took them.
    bytes_in: u64,
}

impl BotStream {
    pub fn new(sock: TcpStream, bucket: Option<TokenBucket>) -> Self {
        BotStream {
            sock,
            tls: None,
            bucket,
            capping: false,
            starved: false,
            more: false,
            bytes_in: 0,
        }
    }

    /// [`BotStream::new`] speaking TLS to `name` with `config`: the handshake starts with the first
    /// write or read (the ClientHello is queued now and goes out with it).
    pub fn tls(
        sock: TcpStream,
        bucket: Option<TokenBucket>,
        config: Arc<rustls::ClientConfig>,
        name: ServerName<'static>,
    ) -> io::Result<Self> {
        let mut conn = rustls::ClientConnection::new(config, name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, TlsError(e)))?;
        conn.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        let mut stream = BotStream::new(sock, bucket);
        stream.tls = Some(Box::new(conn));
        Ok(stream)
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// From now on, reads are capped by the bucket (if any), refilled as of `now`.
    pub fn cap_reads(&mut self, now: Instant) {
        if let Some(bucket) = &mut self.bucket {
            bucket.refill(now);
            self.capping = true;
        }
    }

    /// Reads are no longer capped (a closing connection's bytes are thrown away anyway).
    pub fn uncap_reads(&mut self) {
        self.capping = false;
        self.starved = false;
    }

    /// Earns the tokens due by `now`; call before a round of reads.
    pub fn refill(&mut self, now: Instant) {
        if let Some(bucket) = &mut self.bucket {
            bucket.refill(now);
        }
    }

    /// When a starved stream may read again (its bucket full), if it is starved.
    pub fn unstarved_at(&self) -> Option<Instant> {
        match &self.bucket {
            Some(bucket) if self.starved => Some(bucket.full_at()),
            _ => None,
        }
    }

    /// The bytes read since the last call.
    pub fn take_bytes_in(&mut self) -> u64 {
        std::mem::take(&mut self.bytes_in)
    }

    /// Whether the last `WouldBlock` came from the per-call bound on TLS socket reads rather than from
    /// the socket: the owner must read again next turn. Cleared by the call.
    pub fn take_more(&mut self) -> bool {
        std::mem::take(&mut self.more)
    }

    /// Bytes the next socket read may take: what the bucket allows of a capped stream, else `want`.
    fn read_limit(&self, want: usize) -> usize {
        match &self.bucket {
            Some(bucket) if self.capping => bucket.available().min(want),
            _ => want,
        }
    }

    /// Counts `n` bytes read from the socket (and takes them from a capped stream's bucket).
    fn took(&mut self, n: usize) {
        if self.capping {
            if let Some(bucket) = &mut self.bucket {
                bucket.take(n);
            }
        }
        self.bytes_in += n as u64;
    }

    /// A TLS read: plaintext rustls holds, else ciphertext from the socket until some plaintext comes,
    /// the socket has no more (`WouldBlock`), the bucket is empty (`WouldBlock`, starved) or
    /// [`TLS_READS_PER_CALL`] reads were made (`WouldBlock`, more). The end of the stream is `Ok(0)`,
    /// with or without the server's `close_notify`, as on a plain socket.
    fn read_tls(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        for _ in 0..TLS_READS_PER_CALL {
            let Some(tls) = self.tls.as_mut() else {
                return Ok(0);
            };
            // Handshake records, alerts and what tungstenite wrote go out first, as far as the socket
            // takes them. A broken socket is for the read to report: what the server sent before it
            // went (a close frame, say) is still to be read.
            let _ = push_tls(tls, &mut self.sock);
            match tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The server closed TCP without a close_notify: the end, as for a plain socket (the
                // WebSocket close handshake says whether it was a clean one).
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            let limit = self.read_limit(usize::MAX);
            if limit == 0 {
                self.starved = true;
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.starved = false;
            let Some(tls) = self.tls.as_mut() else {
                return Ok(0);
            };
            let n = tls.read_tls(&mut Limited {
                sock: &mut self.sock,
                limit,
            })?;
            if let Err(e) = tls.process_new_packets() {
                // rustls queued an alert saying why; the connection is over either way.
                let _ = push_tls(tls, &mut self.sock);
                return Err(io::Error::new(io::ErrorKind::InvalidData, TlsError(e)));
            }
            self.took(n);
        }
        self.more = true;
        Err(io::ErrorKind::WouldBlock.into())
    }
}

/// Writes what rustls has to send until it has nothing left or the socket is full (`WouldBlock`).
fn push_tls(tls: &mut rustls::ClientConnection, sock: &mut TcpStream) -> io::Result<()> {
    while tls.wants_write() {
        match tls.write_tls(sock) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The socket, read at most `limit` bytes at a time (a slow bot's cap, under TLS).
struct Limited<'a> {
    sock: &'a mut TcpStream,
    limit: usize,
}

impl Read for Limited<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let len = self.limit.min(buf.len());
        self.sock.read(&mut buf[..len])
    }
}

impl Read for BotStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.tls.is_some() {
            return self.read_tls(buf);
        }
        let limit = self.read_limit(buf.len());
        if limit == 0 && !buf.is_empty() {
            self.starved = true;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.starved = false;
        let n = self.sock.read(&mut buf[..limit])?;
        self.took(n);
        Ok(n)
    }
}

impl Write for BotStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(tls) = self.tls.as_mut() else {
            return self.sock.write(buf);
        };
        push_tls(tls, &mut self.sock)?;
        // rustls takes what its buffer limit allows (before the handshake is done it holds the
        // plaintext, after it the records); none taken means full: wait for the socket.
        let n = tls.writer().write(buf)?;
        if n == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        // Taken is taken: a socket error shows up on the next call.
        let _ = push_tls(tls, &mut self.sock);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        let Some(tls) = self.tls.as_mut() else {
            return self.sock.flush();
        };
        push_tls(tls, &mut self.sock)?;
        if tls.wants_write() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(())
    }
}

/// Bytes read per `read` call of a matchmaking exchange.
const CALL_READ_BYTES: usize = 4096;

/// One HTTP exchange on a non-blocking socket (a matchmaking request, see `matchmake.rs`): connect,
/// (with TLS: the handshake, inside the writes and reads), write the request, read the answer until it
/// is whole. The owner calls [`HttpCall::step`] on every readiness event, and again next turn when
/// [`HttpCall::take_more`] says so, and keeps the time limit.
#[derive(Debug)]
pub struct HttpCall {
    pub stream: BotStream,
    connected: bool,
    request: Vec<u8>,
    written: usize,
    answer: Vec<u8>,
}

/// Why an exchange ended without an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The connect failed or the connection broke.
    Io(String),
    /// The TLS handshake failed (the certificate was refused, say) or TLS broke.
    Tls(String),
    /// What came back is not a usable HTTP answer.
    Answer(String),
}

impl CallError {
    fn of(e: io::Error) -> CallError {
        if is_tls_error(&e) {
            CallError::Tls(e.to_string())
        } else {
            CallError::Io(e.to_string())
        }
    }
}

impl HttpCall {
    /// Starts the exchange: a non-blocking connect to `addr`, TLS to the name given with `tls`;
    /// `request` goes once connected.
    pub fn start(
        addr: SocketAddr,
        request: Vec<u8>,
        tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    ) -> io::Result<HttpCall> {
        let sock = dial(addr, None)?;
        let stream = match tls {
            Some((config, name)) => BotStream::tls(sock, None, config, name)?,
            None => BotStream::new(sock, None),
        };
        Ok(HttpCall {
            stream,
            connected: false,
            request,
            written: 0,
            answer: Vec::new(),
        })
    }

    /// Whether the last step stopped at the bound on TLS reads with more to read: step again next turn.
    pub fn take_more(&mut self) -> bool {
        self.stream.take_more()
    }

    /// Does what the socket allows now (spurious calls are fine): `Ok(Some)` once the answer is whole,
    /// `Ok(None)` while it is not. Reads until `WouldBlock`, as an edge-triggered socket requires, and
    /// never more than [`crate::matchmake::ANSWER_BYTES_MAX`] and one read past it.
    pub fn step(&mut self) -> Result<Option<crate::matchmake::HttpAnswer>, CallError> {
        if !self.connected {
            match connected(&self.stream.sock) {
                Ok(true) => self.connected = true,
                Ok(false) => return Ok(None),
                Err(e) => return Err(CallError::Io(e.to_string())),
            }
        }
        while self.written < self.request.len() {
            match self.stream.write(&self.request[self.written..]) {
                Ok(0) => return Err(CallError::Io("connection closed while writing".into())),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(CallError::of(e)),
            }
        }
        let mut buf = [0u8; CALL_READ_BYTES];
        loop {
            let eof = match self.stream.read(&mut buf) {
                Ok(0) => true,
                Ok(n) => {
                    self.answer.extend_from_slice(&buf[..n]);
                    false
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CallError::of(e)),
            };
            // Whole (or hopeless) answers end the loop; the size limit bounds it.
            match crate::matchmake::read_answer(&self.answer, eof) {
                Ok(Some(answer)) => return Ok(Some(answer)),
                Ok(None) if eof => {
                    return Err(CallError::Answer(
                        "connection closed before the answer".into(),
                    ))
                }
                Ok(None) => {}
                Err(e) => return Err(CallError::Answer(e)),
            }
        }
        Ok(None)
    }
}
