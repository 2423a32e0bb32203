//! Turn step 2, read and decode, for upgraded connections: WebSocket messages handed to the game as they
//! arrive, control frames, protocol errors; and what every reader shares (queueing, marking dead).

use super::*;
use crate::net::conn::ReadTurn;
use crate::net::meter::Violation;
use crate::net::rate::Verdict;
use crate::ticket::{self, TicketError};

/// What a valid ticket admits: the connection's account, to the room it is bound to (any, if `None`).
pub(super) struct Admit {
    pub account: Box<str>,
    pub room: Option<Box<str>>,
}

impl<G: Game, C: Clock> Server<G, C> {
    pub(super) fn on_socket_event(&mut self, k: usize, readable: bool, writable: bool) {
        let Some(conn) = self.net.conns.get_mut(k) else {
            return;
        };
        if conn.dead.is_some() {
            return;
        }
        if writable {
            self.want_write(k);
        }
        // A connection waiting on the reread list is read there, later this turn: once per turn, however
        // many packets raise edges meanwhile.
        if !readable || self.net.conns[k].on_reread_list {
            return;
        }
        let conn = &mut self.net.conns[k];
        if conn.closing.is_some() {
            self.discard_input(k);
        } else if matches!(conn.phase, Phase::Http { .. }) {
            self.read_http(k);
        } else {
            self.read_ws(k);
        }
    }

    /// Lists connection `k` to be read again next turn (it spent its budget with bytes perhaps left in the
    /// socket, which edge-triggered epoll will not report again); once.
    pub(super) fn reread_later(&mut self, k: usize) {
        let conn = &mut self.net.conns[k];
        if !conn.on_reread_list {
            conn.on_reread_list = true;
            self.net.reread_list.push((k, conn.id));
        }
    }

    pub(super) fn want_write(&mut self, k: usize) {
        let conn = &mut self.net.conns[k];
        if !conn.on_write_list {
            conn.on_write_list = true;
            self.net.write_list.push(k);
        }
    }

    /// A closing connection's input is read and dropped until EOF, so the close is clean (no RST).
    pub(super) fn discard_input(&mut self, k: usize) {
        let conn = &mut self.net.conns[k];
        let reason = conn.closing.map_or(CloseReason::Peer, |c| c.reason);
        let mut sink = [0u8; 4096];
        let mut total = 0;
        let outcome = loop {
            if total >= DISCARD_PER_TURN_MAX {
                break Some(false);
            }
            match conn.stream.read(&mut sink) {
                Ok(0) => break None,
                Ok(n) => total += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Some(true),
                Err(_) => break None,
            }
        };
        self.metrics.bytes_in += total as u64;
        match outcome {
            None => {
                self.kill(k, reason);
            }
            Some(false) => self.reread_later(k),
            Some(true) => {}
        }
    }

    /// After a read on a TLS connection: records rustls has to send (its handshake) go out with the turn's
    /// writes, and a read that stopped at its budget of TLS records is taken up next turn.
    pub(super) fn after_tls_read(&mut self, k: usize) {
        let stream = &self.net.conns[k].stream;
        let (write, more) = (stream.wants_write(), stream.more_to_read());
        if write {
            self.want_write(k);
        }
        if more {
            self.reread_later(k);
        }
    }

    /// Marks a connection for reaping at the end of the turn; the first reason sticks.
    pub(super) fn kill(&mut self, k: usize, reason: CloseReason) -> Flow {
        mark_dead(&mut self.net.conns[k], k, reason, &mut self.net.dead_list);
        Flow::Stop
    }

    /// What `ticket` admits, checked against `--ticket-secret-file` now; `None` when tickets are not in use
    /// (then they are ignored). A seat ticket (the matchmaker's) is checked against the cluster's secret
    /// whether or not the backend's tickets are in use, and admits only to this process.
    pub(super) fn check_ticket(&self, ticket: &str) -> Result<Option<Admit>, TicketError> {
        let now = self.clock.unix_time_s();
        if ticket::is_seat(ticket) {
            let Some(cluster) = &self.cluster else {
                return Err(TicketError::NoSeats);
            };
            let lifetime_max_s = crate::cluster::SEAT_EXPIRY_AHEAD_MAX_S;
            let claims = ticket::verify(&cluster.secret, ticket, now, lifetime_max_s)?;
            let process = claims.process.unwrap_or("");
            if process != cluster.settings.process_id {
                return Err(TicketError::OtherProcess {
                    process: process.into(),
                });
            }
            return Ok(Some(Admit {
                account: claims.player.into(),
                room: claims.room.map(Into::into),
            }));
        }
        let Some(secret) = &self.ticket_secret else {
            return Ok(None);
        };
        let claims = ticket::verify(secret, ticket, now, self.cfg.ticket_lifetime_max_s)?;
        Ok(Some(Admit {
            account: claims.player.into(),
            room: claims.room.map(Into::into),
        }))
    }

    /// Queues `scratch` to connection `k`.
    pub(super) fn send_scratch(&mut self, k: usize) -> Flow {
        match self.net.conns[k].queue(&self.net.scratch) {
            Ok(n) => self.metrics.bytes_out += n as u64,
            Err(_) => return self.kill(k, CloseReason::IoError),
        }
        if self.net.conns[k].has_output() {
            self.want_write(k);
        }
        Flow::Go
    }

    /// Reads WebSocket messages from connection `k` until the socket is empty or this turn's budget is
    /// spent: `--messages-per-turn-max` messages, `--read-bytes-per-turn-max` bytes and
    /// `--frames-per-turn-max` frames, whichever comes first. Then the connection waits for the next turn,
    /// so no client keeps the loop in its connection, whatever it sends (an endless fragmented message, a
    /// ping flood). Every frame is charged to the rate limit as it arrives.
    pub(super) fn read_ws(&mut self, k: usize) {
        self.begin_read_turn(k);
        let mut messages_left = self.cfg.messages_per_turn_max;
        loop {
            if messages_left == 0 {
                self.reread_later(k);
                break;
            }
            messages_left -= 1;
            let conn = &mut self.net.conns[k];
            let (phase, mut io) = conn.io();
            let Phase::Ws(ws) = phase else {
                unreachable!("read_ws before upgrade")
            };
            let result = ws.ctx.read(&mut io);
            let echo = ws.echo;
            let bytes_in = io.bytes_in;
            self.metrics.socket_reads += io.reads as u64;
            if bytes_in > 0 {
                ws.pinged = false;
                conn.last_heard = self.now;
                self.metrics.bytes_in += bytes_in as u64;
            }
            if self.police_frames(k) == Flow::Stop {
                break;
            }
            let flow = match result {
                Ok(msg @ (Message::Binary(_) | Message::Text(_))) if echo => self.echo(k, msg),
                Ok(Message::Binary(bytes)) => {
                    self.metrics.frames_in += 1;
                    match self.net.conns[k].ws_mut().expect("upgraded").bucket.admit() {
                        true => self.on_message(k, &bytes),
                        false => {
                            self.metrics.messages_dropped += 1;
                            let conn = self.net.conns[k].id;
                            limited!(
                                self,
                                crate::logs::Warning::MessagesDropped,
                                warn,
                                conn,
                                "message dropped: over --messages-per-s"
                            );
                            Flow::Go
                        }
                    }
                }
                Ok(Message::Text(_)) => self.close(k, Close::TextFrame),
                Ok(Message::Close(frame)) => {
                    if frame.is_some_and(|f| f.code == CloseCode::Normal) {
                        self.goodbye(k);
                    }
                    // tungstenite has queued the echo of the client's close frame.
                    self.start_close(k, CloseReason::Peer)
                }
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => Flow::Go,
                // The socket is empty, or this turn's bytes or frames are spent and it may not be.
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.net.conns[k].read_turn.spent {
                        self.reread_later(k);
                    }
                    self.after_tls_read(k);
                    break;
                }
                Err(WsError::Io(e)) if e.kind() == io::ErrorKind::Interrupted => Flow::Go,
                Err(e) => self.on_ws_error(k, e),
            };
            let conn = &self.net.conns[k];
            debug_assert!(
                flow == Flow::Stop || (conn.closing.is_none() && conn.dead.is_none()),
                "a handler closed its connection and said Go"
            );
            if flow == Flow::Stop {
                break;
            }
        }
        self.flush_control(k);
    }

    /// Sets what connection `k` may read this turn.
    fn begin_read_turn(&mut self, k: usize) {
        let cfg = &self.cfg;
        let conn = &mut self.net.conns[k];
        let echo = conn.ws().is_some_and(|ws| ws.echo);
        conn.read_drained = false;
        conn.read_turn = ReadTurn {
            bytes_left: cfg.read_bytes_per_turn_max,
            frames_left: cfg.frames_per_turn_max,
            // The conformance echo takes messages in any number of fragments (Autobahn sends thousands).
            fragments_max: if echo {
                u32::MAX
            } else {
                cfg.fragments_per_message_max
            },
            now: self.now,
            spent: false,
        };
    }

    /// Charges the frames that arrived to the rate limit, and closes the connection for a message in too
    /// many fragments or a sustained flood (frames of any kind).
    fn police_frames(&mut self, k: usize) -> Flow {
        let conn = &mut self.net.conns[k];
        let frames = conn.meter.take_frames();
        if let Some(Violation::TooManyFragments) = conn.meter.violation {
            return self.close(k, Close::TooManyFragments);
        }
        let ws = conn.ws_mut().expect("upgraded");
        if ws.echo || frames == 0 {
            return Flow::Go;
        }
        let rate = self.cfg.rate_limit();
        if ws.bucket.charge(&rate, self.now, frames) != Verdict::Abuse {
            return Flow::Go;
        }
        self.close(k, Close::RateLimited)
    }

    /// Moves whatever tungstenite queued (pongs, close echoes) into the output queue, and polices its size.
    pub(super) fn flush_control(&mut self, k: usize) {
        let conn = &mut self.net.conns[k];
        if conn.dead.is_some() {
            return;
        }
        let (phase, mut io) = conn.io();
        if let Phase::Ws(ws) = phase {
            let _ = ws.ctx.flush(&mut io);
        }
        if conn.has_output() {
            self.want_write(k);
        }
        if self.net.conns[k].queued() > self.cfg.send_limit_bytes
            && self.net.conns[k].closing.is_none()
        {
            self.close(k, Close::SendLimit);
        }
    }

    /// Conformance echo (`--echo-path`): the message goes straight back through tungstenite's framing.
    fn echo(&mut self, k: usize, msg: Message) -> Flow {
        let (phase, mut io) = self.net.conns[k].io();
        let Phase::Ws(ws) = phase else {
            unreachable!("echo before upgrade")
        };
        match ws.ctx.write(&mut io, msg) {
            Ok(()) => Flow::Go,
            Err(e) => self.on_ws_error(k, e),
        }
    }

    /// Every error ends the connection: killed, or closed with the code its kind calls for.
    pub(super) fn on_ws_error(&mut self, k: usize, e: WsError) -> Flow {
        use tungstenite::error::ProtocolError;
        match e {
            WsError::ConnectionClosed | WsError::AlreadyClosed => self.kill(k, CloseReason::Peer),
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
                self.kill(k, CloseReason::Peer)
            }
            WsError::Io(_) => self.kill(k, CloseReason::IoError),
            WsError::Capacity(e) => self.close(k, Close::TooBig(e.to_string())),
            WsError::Utf8(_) => self.close(k, Close::InvalidUtf8),
            WsError::Protocol(p) => self.close(k, Close::Framing(p.to_string())),
            other => self.close(k, Close::Framing(other.to_string())),
        }
    }

    /// One binary message from connection `k`, decoded and handed to its handler.
    pub(super) fn on_message(&mut self, k: usize, bytes: &[u8]) -> Flow {
        if let Some(version) = proto::announced_version(bytes) {
            if version != proto::PROTOCOL_VERSION {
                return self.close(k, Close::VersionMismatch(version));
            }
        }
        let msg = match proto::decode_client::<G::Input>(bytes) {
            Ok(msg) => msg,
            Err(e) => return self.close(k, Close::Malformed(e.to_string())),
        };
        match msg {
            ClientMsg::Hello {
                name,
                ticket,
                resume,
                ..
            } => self.hello(k, &name, &ticket, resume),
            ClientMsg::Watch { ticket, .. } => self.watch(k, &ticket),
            ClientMsg::Input { seq, input } => match self.net.conns[k].role() {
                Some(Role::Player(player)) => {
                    let r = self.room_of(k);
                    self.rooms.get_mut(r).game.input(player, seq, input);
                    Flow::Go
                }
                _ => self.close(k, Close::InputBeforeHello),
            },
            ClientMsg::Send { body } => match self.net.conns[k].role() {
                Some(Role::Player(player)) => self.player_sent(k, player, &body),
                _ => self.close(k, Close::SendBeforeHello),
            },
            ClientMsg::Ping { nonce } => {
                let tick = self.rooms.get(self.room_of(k)).world.tick();
                self.net.scratch.clear();
                append_message(
                    &mut self.net.scratch,
                    &ServerMsg::<(), ()>::Pong { nonce, tick },
                );
                self.send_scratch(k)
            }
        }
    }
}
