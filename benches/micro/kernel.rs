//! The kernel floor: what one non-blocking `send()` of an update-sized frame costs on a loopback TCP socket
//! whose other end a reader thread drains. A delivered update should cost the server close to this.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A `write` that keeps saying `WouldBlock` this many times in a row means the reader is gone.
const WOULD_BLOCK_IN_A_ROW_MAX: u32 = 1_000_000;
/// The reader gives up if nothing arrives for this long (the sender is dropped at the end of a bench).
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How the sends went, beside their time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SendStats {
    pub sends: u64,
    /// `write` calls that took nothing (not timed, retried after a yield).
    pub would_block: u64,
    /// `write` calls that took part of the frame (timed; the rest is dropped, the reader does not parse).
    pub partial: u64,
}

/// A connected loopback pair: the server side sends, non-blocking; a thread reads the client side.
pub struct Loopback {
    sender: mio::net::TcpStream,
    reader: Option<JoinHandle<u64>>,
    pub stats: SendStats,
}

impl Loopback {
    /// `notsent_lowat_bytes`: `Some` tunes the sender as the server tunes accepted sockets
    /// (`TCP_NODELAY` and `TCP_NOTSENT_LOWAT`); `None` sets `TCP_NODELAY` only.
    pub fn new(notsent_lowat_bytes: Option<u32>) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let client = TcpStream::connect(listener.local_addr()?)?;
        let (server_side, _) = listener.accept()?;
        server_side.set_nonblocking(true)?;
        let sender = mio::net::TcpStream::from_std(server_side);
        match notsent_lowat_bytes {
            Some(bytes) => tickcast::net::socket::tune(&sender, bytes)?,
            None => sender.set_nodelay(true)?,
        }
        client.set_read_timeout(Some(READ_TIMEOUT))?;
        let reader = std::thread::spawn(move || drain(client));
        Ok(Loopback {
            sender,
            reader: Some(reader),
            stats: SendStats::default(),
        })
    }

    /// One successful `write` of `frame`, timed; `WouldBlock` attempts are retried and not timed.
    pub fn send(&mut self, frame: &[u8]) -> Duration {
        for _ in 0..WOULD_BLOCK_IN_A_ROW_MAX {
            let started = Instant::now();
            match self.sender.write(frame) {
                Ok(n) => {
                    let took = started.elapsed();
                    self.stats.sends += 1;
                    if n < frame.len() {
                        self.stats.partial += 1;
                    }
                    return took;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.stats.would_block += 1;
                    std::thread::yield_now();
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => panic!("loopback send failed: {e}"),
            }
        }
        panic!("loopback reader stopped draining");
    }

    /// Closes the sender and waits for the reader; returns the bytes it read.
    pub fn finish(mut self) -> u64 {
        let _ = self.sender.shutdown(std::net::Shutdown::Write);
        self.reader
            .take()
            .expect("finished once")
            .join()
            .expect("reader thread")
    }
}

/// Reads until EOF, an error or [`READ_TIMEOUT`] of silence.
fn drain(mut sock: TcpStream) -> u64 {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        match sock.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return total,
        }
    }
}
