//! TLS on the loop's own sockets (`--tls-cert`, `--tls-key`; docs/OPERATIONS.md, "TLS"). A connection's
//! [`Stream`] is its TCP socket, plain or wrapped in a rustls `ServerConnection` that is driven without
//! ever blocking: a read takes ciphertext from the socket (`read_tls`), decrypts it
//! (`process_new_packets`) and hands out plaintext; a write encrypts into rustls's buffer and pushes the
//! records out (`write_tls`) as far as the socket takes them. Everything above sees plaintext: the HTTP
//! head, the WebSocket frames, and the update bytes, still framed once per room and only encrypted per
//! connection.
//!
//! Bounds: rustls holds at most [`TLS_BUFFER_LIMIT`] bytes unsent per connection (past it a write says
//! `WouldBlock` and the rest waits in the connection's queue, where the slow-consumer rules see it); a
//! read makes at most [`TLS_READS_PER_CALL`] socket reads, so a client cannot keep the loop decrypting; a
//! handshake not finished within `--tls-handshake-timeout-ms` is dropped (`server/tick.rs`). rustls itself
//! caps what it buffers of received plaintext.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

/// Bytes rustls may hold for a connection that the socket has not taken yet (ciphertext, or plaintext
/// before the handshake is done). More waits in the connection's own queue.
pub const TLS_BUFFER_LIMIT: usize = 32 * 1024;
/// Socket reads one `read` makes at most while it finds no plaintext (handshake records, alerts).
pub const TLS_READS_PER_CALL: usize = 16;
/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Why a TLS handshake failed, as counted in `tickcast_tls_handshake_failures_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailure {
    /// The first byte is no TLS record: a plain HTTP request (answered with a plain 400), or junk.
    NotTls,
    /// The client closed before the handshake was done.
    Eof,
    /// The client sent an alert (it refused our certificate, say).
    Alert,
    /// A malformed or unexpected handshake (no protocol version or cipher in common, garbage).
    Protocol,
    /// Not done within `--tls-handshake-timeout-ms`.
    Timeout,
}

impl TlsFailure {
    pub const ALL: [TlsFailure; 5] = [
        TlsFailure::NotTls,
        TlsFailure::Eof,
        TlsFailure::Alert,
        TlsFailure::Protocol,
        TlsFailure::Timeout,
    ];

    pub fn label(self) -> &'static str {
        match self {
            TlsFailure::NotTls => "not_tls",
            TlsFailure::Eof => "eof",
            TlsFailure::Alert => "alert",
            TlsFailure::Protocol => "protocol",
            TlsFailure::Timeout => "timeout",
        }
    }
}

/// A TLS error, as the `io::Error` a [`Stream`] read returns (kind `InvalidData`).
#[derive(Debug)]
pub struct TlsError(pub TlsFailure, pub String);

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TLS {}: {}", self.0.label(), self.1)
    }
}

impl std::error::Error for TlsError {}

/// The server's TLS settings from a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1 RSA or
/// SEC1 EC): TLS 1.3 and 1.2 with rustls's default cipher suites (ring), ALPN `http/1.1`. The error says
/// which file is wrong and how.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "--tls-cert {}: no certificate in it",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("--tls-cert and --tls-key do not make a usable pair: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A connection's byte stream: the TCP socket, plain or TLS.
pub struct Stream {
    sock: TcpStream,
    tls: Option<Box<Tls>>,
}

struct Tls {
    conn: rustls::ServerConnection,
    /// Plaintext rustls took that may not be on the wire yet: an upper bound, zero once it holds nothing.
    unsent: usize,
    /// The first byte was looked at (is it TLS?).
    checked: bool,
    /// The last read ended at the socket's `WouldBlock`: nothing more to read until a new event.
    drained: bool,
    /// The last read stopped at [`TLS_READS_PER_CALL`]: the socket may hold more.
    more: bool,
    /// The handshake finished and nobody has been told yet.
    done_untold: bool,
    /// Why the handshake failed, once it did.
    failure: Option<TlsFailure>,
}

impl Stream {
    pub fn plain(sock: TcpStream) -> Stream {
        Stream { sock, tls: None }
    }

    /// A TLS server stream with `config`, its handshake still to come.
    pub fn tls(sock: TcpStream, config: Arc<ServerConfig>) -> io::Result<Stream> {
        let mut conn = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
        conn.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        let tls = Tls {
            conn,
            unsent: 0,
            checked: false,
            drained: false,
            more: false,
            done_untold: false,
            failure: None,
        };
        Ok(Stream {
            sock,
            tls: Some(Box::new(tls)),
        })
    }

    /// The TCP socket (for the poll's registry, and for what is written before any TLS).
    pub fn tcp(&mut self) -> &mut TcpStream {
        &mut self.sock
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// A TLS stream whose handshake is not done yet.
    pub fn handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.conn.is_handshaking())
    }

    /// True once, when the handshake has just finished.
    pub fn take_handshake_done(&mut self) -> bool {
        self.tls
            .as_mut()
            .is_some_and(|t| std::mem::take(&mut t.done_untold))
    }

    /// Why the handshake failed, if it did.
    pub fn failure(&self) -> Option<TlsFailure> {
        self.tls.as_ref().and_then(|t| t.failure)
    }

    /// Marks the handshake as failed for `why` (the loop's timeout).
    pub fn fail(&mut self, why: TlsFailure) {
        if let Some(tls) = &mut self.tls {
            tls.failure.get_or_insert(why);
        }
    }

    /// Bytes inside TLS not known to be on the wire (an upper bound; 0 for a plain stream).
    pub fn unsent(&self) -> usize {
        self.tls.as_ref().map_or(0, |t| t.unsent)
    }

    /// TLS records wait for the socket.
    pub fn wants_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.conn.wants_write())
    }

    /// Whether a read that returned `n` of `want` bytes emptied the socket: a short plain read does; a
    /// TLS read only when the socket itself said `WouldBlock` (a record's plaintext can be short while
    /// more records wait).
    pub fn read_drained(&self, n: usize, want: usize) -> bool {
        match &self.tls {
            None => n > 0 && n < want,
            Some(tls) => tls.drained,
        }
    }

    /// The last read stopped at its budget of socket reads: come back next turn.
    pub fn more_to_read(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.more)
    }

    /// Pushes the TLS records rustls holds to the socket, as far as it takes them.
    pub fn flush_tls(&mut self) -> io::Result<()> {
        match &mut self.tls {
            None => Ok(()),
            Some(tls) => push_records(tls, &mut self.sock),
        }
    }

    /// Ends the write side: a TLS `close_notify` first (as far as the socket takes it), then the TCP FIN.
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        if let Some(tls) = &mut self.tls {
            tls.conn.send_close_notify();
            let _ = push_records(tls, &mut self.sock);
        }
        self.sock.shutdown(std::net::Shutdown::Write)
    }
}

/// Writes what rustls holds until it holds nothing or the socket would block.
fn push_records(tls: &mut Tls, sock: &mut TcpStream) -> io::Result<()> {
    while tls.conn.wants_write() {
        match tls.conn.write_tls(sock) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    tls.unsent = 0;
    Ok(())
}

fn tls_error(tls: &mut Tls, why: TlsFailure, text: String) -> io::Error {
    if tls.conn.is_handshaking() {
        tls.failure.get_or_insert(why);
    }
    io::Error::new(io::ErrorKind::InvalidData, TlsError(why, text))
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = &mut self.tls else {
            return self.sock.read(buf);
        };
        tls.drained = false;
        tls.more = false;
        if !tls.checked {
            let mut first = [0u8; 1];
            match self.sock.peek(&mut first) {
                Ok(0) => {
                    tls.failure.get_or_insert(TlsFailure::Eof);
                    return Ok(0);
                }
                Ok(_) if first[0] != TLS_HANDSHAKE_RECORD => {
                    let text = "the first byte is no TLS handshake record".to_string();
                    return Err(tls_error(tls, TlsFailure::NotTls, text));
                }
                Ok(_) => tls.checked = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    tls.drained = true;
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
        for _ in 0..TLS_READS_PER_CALL {
            match tls.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed the TCP connection without a close_notify: the end, all the same.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            let handshaking = tls.conn.is_handshaking();
            match tls.conn.read_tls(&mut self.sock) {
                Ok(0) => {
                    if handshaking {
                        tls.failure.get_or_insert(TlsFailure::Eof);
                    }
                    return Ok(0);
                }
                Ok(_) => {
                    let state = tls.conn.process_new_packets();
                    // Whatever rustls has to say (its handshake messages, or the alert for an error).
                    let _ = push_records(tls, &mut self.sock);
                    let state = match state {
                        Ok(state) => state,
                        Err(e) => {
                            let why = match e {
                                rustls::Error::AlertReceived(_) => TlsFailure::Alert,
                                _ => TlsFailure::Protocol,
                            };
                            return Err(tls_error(tls, why, e.to_string()));
                        }
                    };
                    if handshaking && !tls.conn.is_handshaking() {
                        tls.done_untold = true;
                    }
                    if state.peer_has_closed() && state.plaintext_bytes_to_read() == 0 {
                        return Ok(0);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    tls.drained = true;
                    return Err(e);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        tls.more = true;
        Err(io::ErrorKind::WouldBlock.into())
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(tls) = &mut self.tls else {
            return self.sock.write(buf);
        };
        push_records(tls, &mut self.sock)?;
        let n = tls.conn.writer().write(buf)?;
        if n == 0 && !buf.is_empty() {
            // rustls holds `TLS_BUFFER_LIMIT` the socket has not taken: the rest waits in the queue.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        tls.unsent += n;
        push_records(tls, &mut self.sock)?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_tls()
    }
}
