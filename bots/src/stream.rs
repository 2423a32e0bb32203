//! A bot's socket: a non-blocking TCP stream (opened with socket2 so options are set before the connect)
//! wrapped so that reads can be capped by a token bucket and every byte read is counted.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;
use socket2::{Domain, Protocol, Socket, Type};

use crate::bucket::TokenBucket;

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

/// The stream tungstenite reads and writes through.
#[derive(Debug)]
pub struct BotStream {
    pub sock: TcpStream,
    /// The read cap of a slow bot; applied only once [`BotStream::cap_reads`] is called, so the HTTP
    /// upgrade is never throttled into tungstenite's small-packet attack check.
    bucket: Option<TokenBucket>,
    capping: bool,
    /// Set when a read was refused for want of tokens (not for want of data): the owner must retry once
    /// the bucket has refilled, because the socket will not signal again for bytes already waiting.
    pub starved: bool,
    /// Bytes read from the socket since the owner last took them.
    bytes_in: u64,
}

impl BotStream {
    pub fn new(sock: TcpStream, bucket: Option<TokenBucket>) -> Self {
        BotStream {
            sock,
            bucket,
            capping: false,
            starved: false,
            bytes_in: 0,
        }
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
}

impl Read for BotStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let limit = match &self.bucket {
            Some(bucket) if self.capping => bucket.available(),
            _ => buf.len(),
        };
        if limit == 0 && !buf.is_empty() {
            self.starved = true;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.starved = false;
        let len = limit.min(buf.len());
        let n = self.sock.read(&mut buf[..len])?;
        if self.capping {
            if let Some(bucket) = &mut self.bucket {
                bucket.take(n);
            }
        }
        self.bytes_in += n as u64;
        Ok(n)
    }
}

impl Write for BotStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sock.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush()
    }
}

/// Bytes read per `read` call of a matchmaking exchange.
const CALL_READ_BYTES: usize = 4096;

/// One HTTP exchange on a non-blocking socket (a matchmaking request, see `matchmake.rs`): connect,
/// write the request, read the answer until it is whole. The owner calls [`HttpCall::step`] on every
/// readiness event and keeps the time limit.
#[derive(Debug)]
pub struct HttpCall {
    pub sock: TcpStream,
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
    /// What came back is not a usable HTTP answer.
    Answer(String),
}

impl HttpCall {
    /// Starts the exchange: a non-blocking connect to `addr`; `request` goes once connected.
    pub fn start(addr: SocketAddr, request: Vec<u8>) -> io::Result<HttpCall> {
        Ok(HttpCall {
            sock: dial(addr, None)?,
            connected: false,
            request,
            written: 0,
            answer: Vec::new(),
        })
    }

    /// Does what the socket allows now (spurious calls are fine): `Ok(Some)` once the answer is whole,
    /// `Ok(None)` while it is not. Reads until `WouldBlock`, as an edge-triggered socket requires, and
    /// never more than [`crate::matchmake::ANSWER_BYTES_MAX`] and one read past it.
    pub fn step(&mut self) -> Result<Option<crate::matchmake::HttpAnswer>, CallError> {
        if !self.connected {
            match connected(&self.sock) {
                Ok(true) => self.connected = true,
                Ok(false) => return Ok(None),
                Err(e) => return Err(CallError::Io(e.to_string())),
            }
        }
        while self.written < self.request.len() {
            match self.sock.write(&self.request[self.written..]) {
                Ok(0) => return Err(CallError::Io("connection closed while writing".into())),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(CallError::Io(e.to_string())),
            }
        }
        let mut buf = [0u8; CALL_READ_BYTES];
        loop {
            let eof = match self.sock.read(&mut buf) {
                Ok(0) => true,
                Ok(n) => {
                    self.answer.extend_from_slice(&buf[..n]);
                    false
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CallError::Io(e.to_string())),
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
