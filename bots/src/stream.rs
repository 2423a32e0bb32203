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
