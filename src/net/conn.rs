//! One accepted socket and everything the loop keeps for it: its phase (HTTP request, WebSocket), its
//! bounded output queue, its replication baseline and its timers.

use std::io::{self, Read, Write};
use std::time::Instant;

use tungstenite::protocol::WebSocketContext;

use super::frame;
use super::meter::FrameMeter;
use super::tls::Stream;
use crate::metrics::CloseReason;
use crate::sim::PlayerId;

/// Bytes queued in user space for one connection, oldest first. The update path writes straight to the
/// socket when this is empty and only copies what the kernel did not take, so the steady state copies
/// nothing. Its size is policed by the loop (`--send-hwm-bytes`, `--send-limit-bytes`), not here.
#[derive(Debug, Default)]
pub struct OutBuf {
    buf: Vec<u8>,
    /// Bytes of `buf` already written.
    start: usize,
    /// An offset at or before `start` where a WebSocket frame begins, once everything from there on is
    /// frames (after the HTTP 101). It lets a slow consumer's stale frames be dropped without cutting one.
    frames_from: Option<usize>,
}

/// Capacity a drained queue keeps, so a connection that only ever gets part of each update into the
/// kernel does not reallocate every tick; a queue grown beyond it (a `Full` of a big world, a backlog) is
/// freed once it drains. An idle connection's queue never allocates at all.
const OUT_CAPACITY_KEEP: usize = 64 * 1024;

impl OutBuf {
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.pending() == 0
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Queues `bytes` behind whatever is pending, writing them straight to `sock` when nothing is, so the
    /// steady state copies nothing. Returns bytes written now; an error means the socket is broken.
    pub fn queue(&mut self, sock: &mut impl Write, bytes: &[u8]) -> io::Result<usize> {
        if !self.is_empty() {
            self.push(bytes);
            return Ok(0);
        }
        let mut written = 0;
        while written < bytes.len() {
            match sock.write(&bytes[written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if written < bytes.len() {
            self.push_after_partial_write(bytes, written);
        }
        Ok(written)
    }

    /// Queues the rest of `bytes` after the socket took `written` of them. The written part is kept too
    /// (as already sent), so the queue still begins at a frame boundary. Only valid when empty.
    fn push_after_partial_write(&mut self, bytes: &[u8], written: usize) {
        debug_assert!(self.is_empty());
        self.buf.clear();
        self.buf.extend_from_slice(bytes);
        self.start = written;
        self.frames_from = self.frames_from.map(|_| 0);
    }

    /// Everything pushed from now on is whole WebSocket frames.
    pub fn frames_begin_here(&mut self) {
        self.frames_from = Some(self.buf.len());
    }

    /// Where the frame being written begins (at or before `start`), when known.
    fn head_frame(&mut self) -> Option<usize> {
        let mut pos = self.frames_from?;
        while pos < self.start {
            let len = frame::frame_len(&self.buf[pos..]).expect("queued frames are whole");
            if pos + len > self.start {
                break;
            }
            pos += len;
        }
        self.frames_from = Some(pos);
        Some(pos)
    }

    /// Drops every queued frame the socket has not started on, keeping the one it is partway through, so a
    /// close frame queued next goes out at once. Used when a slow consumer is closed: its queued updates are
    /// stale. Returns the bytes dropped.
    pub fn drop_unsent_frames(&mut self) -> usize {
        let Some(head) = self.head_frame() else {
            return 0;
        };
        // A frame begins at or after the write position: none is partway out (past the end of the HTTP 101
        // if that is still going). Otherwise the one partway out is kept whole.
        let keep_to = if head >= self.start {
            head
        } else {
            head + frame::frame_len(&self.buf[head..]).expect("queued frames are whole")
        };
        let dropped = self.buf.len() - keep_to;
        self.buf.truncate(keep_to);
        dropped
    }

    /// Writes until empty or the socket would block. Returns bytes written.
    pub fn write_to(&mut self, sock: &mut impl Write) -> io::Result<usize> {
        let mut written = 0;
        while self.start < self.buf.len() {
            match sock.write(&self.buf[self.start..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.start += n;
                    written += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
            self.frames_from = self.frames_from.map(|_| 0);
            if self.buf.capacity() > OUT_CAPACITY_KEEP {
                self.buf = Vec::new();
            }
        } else if self.start > self.buf.len() / 2 {
            // Keep the head frame's header, so frame boundaries stay known.
            // At or before `start`: while the HTTP 101 is still being written no frame has begun yet.
            let keep_from = self.head_frame().unwrap_or(self.start).min(self.start);
            self.buf.drain(..keep_from);
            self.start -= keep_from;
            self.frames_from = self.frames_from.map(|from| from - keep_from);
        }
        Ok(written)
    }
}

/// What the connection is doing.
pub enum Phase {
    /// Reading an HTTP request head; `buf` is bounded by `--max-header-bytes` (plus one byte). Boxed,
    /// like the WebSocket state, so a connection's slab entry holds neither (memory per idle connection).
    Http { buf: Box<super::http::HeadBuf> },
    /// Upgraded.
    Ws(Box<WsState>),
}

/// Per-WebSocket state.
pub struct WsState {
    /// Frame parsing, control frames and close handshake; borrows the socket through [`Io`].
    pub ctx: WebSocketContext,
    /// The last tick whose update was queued to this connection; `None` until its first `Full`.
    pub baseline: Option<u64>,
    /// When the last update was queued (or the upgrade happened): how long it has been skipped.
    pub last_update_at: Instant,
    /// What the client said it is; updates flow only once it said.
    pub role: Role,
    /// The player id of the ticket the connection brought (`?ticket=` or its first message), once checked.
    pub account: Option<Box<str>>,
    /// A conformance echo connection (`--echo-path`): messages come back as they are, no game, no updates.
    pub echo: bool,
    /// A ping was sent and nothing has been heard since.
    pub pinged: bool,
    /// Rate limiting of every frame (`--messages-per-s`).
    pub bucket: super::rate::Bucket,
    /// Its queue has been empty at least once since its first update: it has taken an update whole. Until
    /// then the shorter `--first-update-lag-limit-ms` applies.
    pub caught_up: bool,
}

/// Where a connection sits in the application's rooms: the room's key in the loop's room table, and the
/// connection's index in that room's member list. Plain data; the server keeps it true.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    pub room: usize,
    pub at: usize,
}

/// What a WebSocket connection is, by what its client said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Upgraded, but no `Hello` or `Watch` yet: sent nothing but `Welcome` (and `Pong`s).
    Pending,
    /// Sent `Watch`: receives updates, controls nothing.
    Spectator,
    /// Sent `Hello` and plays this player.
    Player(PlayerId),
}

/// A close in progress: the close frame or HTTP answer is queued; once it is written the write side is
/// shut, then the socket is dropped at EOF or at the deadline, whichever comes first.
#[derive(Debug, Clone, Copy)]
pub struct Closing {
    pub reason: CloseReason,
    pub deadline: Instant,
    pub write_shut: bool,
}

pub struct Conn {
    /// The socket, plain or TLS: everything above it reads and writes plaintext.
    pub stream: Stream,
    /// Unique for the process's life; also the [`PlayerId`] of a player who joins on this connection.
    pub id: u64,
    pub phase: Phase,
    pub out: OutBuf,
    pub opened_at: Instant,
    /// The last time any bytes arrived.
    pub last_heard: Instant,
    /// Whether WRITABLE interest is registered (only while `out` holds bytes).
    pub writable_interest: bool,
    /// Whether the connection is on the loop's write list this turn.
    pub on_write_list: bool,
    /// Whether the connection is on the loop's reread list (it spent its read budget).
    pub on_reread_list: bool,
    /// The room it is in and its place in that room's member list, from its upgrade on.
    pub membership: Option<Membership>,
    pub closing: Option<Closing>,
    /// Set when the connection must be reaped at the end of the turn, with why.
    pub dead: Option<CloseReason>,
    /// A read this turn came back short: the socket's receive queue is empty, so the next read would only
    /// say WouldBlock. Skipping it saves a system call per message; new data raises a new edge-triggered
    /// event anyway. Cleared when the loop starts reading the connection again.
    pub read_drained: bool,
    /// The peer has half-closed (epoll said RDHUP). Then a short read is not the end: the EOF behind it
    /// raises no new event, so it must be read now. Found by the `connection` fuzz target.
    pub peer_closed: bool,
    /// The frames in what the client sent (WebSocket only; fed by [`Io`]).
    pub meter: FrameMeter,
    /// What may still be read this turn; set by the loop before it reads.
    pub read_turn: ReadTurn,
    /// The address the connection counts against (`--max-connections-per-ip`), released when it is reaped;
    /// `None` when no per-address limit is on.
    pub peer: Option<super::peers::PeerKey>,
    /// Accepted into one of the `--health-slots` beyond `--max-connections`: only `/healthz` and
    /// `/metrics` are served on it.
    pub spare: bool,
}

/// What one connection may still read in this loop turn (`--read-bytes-per-turn-max`,
/// `--frames-per-turn-max`), and what the frame meter needs to know.
#[derive(Debug, Clone, Copy)]
pub struct ReadTurn {
    pub bytes_left: usize,
    pub frames_left: u32,
    /// `--fragments-per-message-max` for this connection.
    pub fragments_max: u32,
    /// The loop's time this turn, when bytes are read.
    pub now: Instant,
    /// A read was refused because the budget ran out (or the meter found a violation): the socket may hold
    /// more, so the loop must come back to it next turn.
    pub spent: bool,
}

impl ReadTurn {
    /// Nothing may be read until the loop sets a budget.
    fn none(now: Instant) -> Self {
        ReadTurn {
            bytes_left: 0,
            frames_left: 0,
            fragments_max: 1,
            now,
            spent: false,
        }
    }
}

impl Conn {
    pub fn new(stream: Stream, id: u64, now: Instant) -> Self {
        Conn {
            stream,
            id,
            phase: Phase::Http {
                buf: Default::default(),
            },
            out: OutBuf::default(),
            opened_at: now,
            last_heard: now,
            writable_interest: false,
            on_write_list: false,
            on_reread_list: false,
            membership: None,
            closing: None,
            dead: None,
            read_drained: false,
            peer_closed: false,
            meter: FrameMeter::default(),
            read_turn: ReadTurn::none(now),
            peer: None,
            spare: false,
        }
    }

    /// The WebSocket role, once upgraded.
    pub fn role(&self) -> Option<Role> {
        self.ws().map(|ws| ws.role)
    }

    /// The WebSocket state, once upgraded (closing or not).
    pub fn ws(&self) -> Option<&WsState> {
        match &self.phase {
            Phase::Ws(ws) => Some(ws),
            Phase::Http { .. } => None,
        }
    }

    /// The WebSocket state, once upgraded (closing or not), to change.
    pub fn ws_mut(&mut self) -> Option<&mut WsState> {
        match &mut self.phase {
            Phase::Ws(ws) => Some(ws),
            Phase::Http { .. } => None,
        }
    }

    /// The WebSocket state, while the connection is open for updates (upgraded, not closing or dead).
    pub fn live_ws(&mut self) -> Option<&mut WsState> {
        match &mut self.phase {
            Phase::Ws(ws) if self.closing.is_none() && self.dead.is_none() => Some(ws),
            _ => None,
        }
    }

    /// Everything queued has gone to the kernel: once it has been sent an update, the connection has taken
    /// one whole (`WsState::caught_up`).
    pub fn note_drained(&mut self) {
        if let Phase::Ws(ws) = &mut self.phase {
            ws.caught_up |= ws.baseline.is_some();
        }
    }

    /// Queues `bytes` behind whatever is pending, writing straight to the socket when nothing is.
    /// Returns bytes written to the socket now; an error means the socket is broken.
    pub fn queue(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.out.queue(&mut self.stream, bytes)
    }

    /// Bytes queued for the client and not yet on the wire: the connection's queue, and what TLS holds
    /// (an upper bound). What the slow-consumer rules and the memory budget count.
    pub fn queued(&self) -> usize {
        self.out.pending() + self.stream.unsent()
    }

    /// Whether anything waits to be written: the queue, or TLS records.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty() || self.stream.wants_write()
    }

    /// The socket and output queue as one stream for tungstenite: reads come from the socket, writes are
    /// queued (they never block; the loop flushes and polices the queue).
    pub fn io(&mut self) -> (&mut Phase, Io<'_>) {
        (
            &mut self.phase,
            Io {
                sock: &mut self.stream,
                out: &mut self.out,
                drained: &mut self.read_drained,
                peer_closed: self.peer_closed,
                meter: &mut self.meter,
                turn: &mut self.read_turn,
                bytes_in: 0,
                reads: 0,
            },
        )
    }
}

/// What tungstenite reads from and writes to. See [`Conn::io`].
pub struct Io<'a> {
    sock: &'a mut Stream,
    out: &'a mut OutBuf,
    drained: &'a mut bool,
    peer_closed: bool,
    meter: &'a mut FrameMeter,
    turn: &'a mut ReadTurn,
    /// Bytes read through this adaptor, for metrics and idle tracking.
    pub bytes_in: usize,
    /// Reads of the socket through this adaptor (those that said WouldBlock included).
    pub reads: usize,
}

impl Read for Io<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if *self.drained && !self.peer_closed {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let turn = &mut *self.turn;
        if turn.bytes_left == 0 || turn.frames_left == 0 || self.meter.violation.is_some() {
            // Not the socket's WouldBlock: the loop sees `spent` and reads on next turn (edge-triggered
            // epoll will not report these bytes again).
            turn.spent = true;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let want = buf.len().min(turn.bytes_left);
        self.reads += 1;
        let n = self.sock.read(&mut buf[..want])?;
        self.bytes_in += n;
        turn.bytes_left -= n;
        let frames = self.meter.feed(&buf[..n], turn.now, turn.fragments_max);
        turn.frames_left = turn.frames_left.saturating_sub(frames);
        // A short read (not EOF) means the receive queue is empty right now (for TLS: the socket said so).
        *self.drained = self.sock.read_drained(n, want);
        Ok(n)
    }
}

impl Write for Io<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket that takes `n` bytes and then would block.
    struct Takes(usize);

    impl Write for Takes {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.0);
            self.0 -= n;
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn frame_of(len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        frame::write_binary(&mut out, &vec![1u8; len]);
        out
    }

    #[test]
    fn dropping_unsent_frames_keeps_the_one_in_flight_whole() {
        let mut out = OutBuf::default();
        out.push(b"HTTP/1.1 101 ...\r\n\r\n");
        out.frames_begin_here();
        let first_frame_at = out.pending();
        for len in [10, 300, 70_000, 5] {
            out.push(&frame_of(len));
        }
        // The 101, the first frame and part of the second are written.
        out.write_to(&mut Takes(first_frame_at + 12 + 50)).unwrap();
        let dropped = out.drop_unsent_frames();
        assert_eq!(dropped, frame_of(70_000).len() + frame_of(5).len());
        // What is left is exactly the rest of the second frame.
        assert_eq!(out.pending(), frame_of(300).len() - 50);
        // Nothing written yet of a frame: all of it can go.
        let mut fresh = OutBuf::default();
        fresh.frames_begin_here();
        fresh.push(&frame_of(3));
        assert_eq!(fresh.drop_unsent_frames(), 5);
        assert!(fresh.is_empty());
    }

    #[test]
    fn compaction_while_the_101_is_still_going_out_keeps_where_frames_begin() {
        let mut out = OutBuf::default();
        let head = vec![b'H'; 100];
        out.push(&head);
        out.frames_begin_here();
        out.push(&frame_of(10));
        // Past half of the buffer is written, but not all of the head: nothing to drop from the frames.
        out.write_to(&mut Takes(70)).unwrap();
        assert_eq!(out.pending(), 30 + 12);
        assert_eq!(out.drop_unsent_frames(), 12);
        assert_eq!(out.pending(), 30);
    }

    #[test]
    fn compaction_keeps_frame_boundaries() {
        let mut out = OutBuf::default();
        out.frames_begin_here();
        for _ in 0..4 {
            out.push(&frame_of(100));
        }
        // Past half: the buffer compacts, keeping the partly written frame's header.
        out.write_to(&mut Takes(3 * 102 + 10)).unwrap();
        assert_eq!(out.pending(), 92);
        out.push(&frame_of(100));
        assert_eq!(out.drop_unsent_frames(), 102);
        assert_eq!(out.pending(), 92);
    }
}
