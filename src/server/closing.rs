//! Closing connections, turn step 5 (write what is queued) and step 6 (reap the dead), and the drain on
//! shutdown.

use super::*;
use crate::logs::Warning;
use crate::net::tls::TlsFailure;

impl<G: Game, C: Clock> Server<G, C> {
    /// Sends the close frame of `close` (its code and reason), then closes once it is written (or at the
    /// linger deadline); counted under its label now.
    pub(super) fn close(&mut self, k: usize, close: Close) -> Flow {
        let conn = &mut self.net.conns[k];
        if conn.closing.is_some() || conn.dead.is_some() {
            return Flow::Stop;
        }
        let id = conn.id;
        let warning = match close {
            Close::RateLimited => Some(Warning::RateLimited),
            Close::Lagging | Close::FirstUpdateLagging | Close::SendLimit => {
                Some(Warning::SlowConsumer)
            }
            _ => None,
        };
        if let Some(kind) = warning {
            let reason = close.reason(&self.cfg);
            limited!(self, kind, warn, conn = id, code = close.code(), %reason, "closing connection: limit hit");
        }
        let conn = &mut self.net.conns[k];
        if close.drops_queued_updates() {
            // What is queued is stale; let the close frame through right behind the frame in flight.
            conn.out.drop_unsent_frames();
        }
        let (phase, mut io) = conn.io();
        if let Phase::Ws(ws) = phase {
            // A close reason must fit a control frame: 125 bytes minus the code.
            let reason = close.reason(&self.cfg);
            tracing::debug!(conn = id, code = close.code(), %reason, label = close.counted_as().label(), "closing connection");
            let frame = CloseFrame {
                code: CloseCode::from(close.code()),
                reason: truncate_utf8(&reason, 123).to_string().into(),
            };
            // A pong tungstenite still owes (a ping was just read) goes out now, before the close frame:
            // `close` would write it after, and nothing may follow a close (docs/FUZZING.md, O2).
            let _ = ws.ctx.flush(&mut io);
            let _ = ws.ctx.close(&mut io, Some(frame));
            let _ = ws.ctx.flush(&mut io);
        }
        self.start_close(k, close.counted_as())
    }

    /// Marks a connection closing: what is queued still goes out, then the write side is shut.
    pub(super) fn start_close(&mut self, k: usize, reason: CloseReason) -> Flow {
        let conn = &mut self.net.conns[k];
        if conn.closing.is_none() {
            let deadline = self.now + Duration::from_millis(self.cfg.close_linger_ms);
            conn.closing = Some(Closing {
                reason,
                deadline,
                write_shut: false,
            });
            // Counted when decided, not when the socket finally goes, so the metric is prompt.
            self.metrics.closed(reason);
            // Input (and the client's EOF) may already wait in the socket and raise no new edge: read
            // it next turn, where closing connections discard what they read.
            self.reread_later(k);
        }
        self.want_write(k);
        Flow::Stop
    }

    // ---- 5. write ----------------------------------------------------------------------------------------

    pub(super) fn flush_writes(&mut self) {
        let mut list = std::mem::take(&mut self.net.write_list);
        for k in list.drain(..) {
            let Some(conn) = self.net.conns.get_mut(k) else {
                continue;
            };
            conn.on_write_list = false;
            if conn.dead.is_some() {
                continue;
            }
            // TLS records rustls still holds go first, then the queue (each write pushes records too).
            let written = conn
                .stream
                .flush_tls()
                .and_then(|()| conn.out.write_to(&mut conn.stream));
            match written {
                Ok(n) => {
                    self.metrics.bytes_out += n as u64;
                    self.queued_estimate = self.queued_estimate.saturating_sub(n);
                }
                Err(_) => {
                    let reason = conn.closing.map_or(CloseReason::IoError, |c| c.reason);
                    mark_dead(conn, k, reason, &mut self.net.dead_list);
                    continue;
                }
            }
            if !conn.has_output() {
                conn.note_drained();
            }
            let want_writable = conn.has_output();
            if want_writable != conn.writable_interest {
                let interest = if want_writable {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                if self
                    .net
                    .poll
                    .registry()
                    .reregister(conn.stream.tcp(), Token(k), interest)
                    .is_err()
                {
                    mark_dead(conn, k, CloseReason::IoError, &mut self.net.dead_list);
                    continue;
                }
                conn.writable_interest = want_writable;
                match want_writable {
                    true => self.net.backlogged.insert(k),
                    false => self.net.backlogged.remove(&k),
                };
            }
            let has_output = conn.has_output();
            if let Some(closing) = &mut conn.closing {
                if !has_output && !closing.write_shut {
                    closing.write_shut = true;
                    if conn.stream.shutdown_write().is_err() {
                        let reason = closing.reason;
                        mark_dead(conn, k, reason, &mut self.net.dead_list);
                    }
                }
            }
        }
        self.net.write_list = keep_capacity(list, std::mem::take(&mut self.net.write_list));
    }

    // ---- 6. reap -----------------------------------------------------------------------------------------

    pub(super) fn reap(&mut self) {
        let mut list = std::mem::take(&mut self.net.dead_list);
        for k in list.drain(..) {
            let mut conn = self.net.conns.remove(k);
            self.net.backlogged.remove(&k);
            let _ = self.net.poll.registry().deregister(conn.stream.tcp());
            if conn.stream.handshaking() {
                // Gone before its TLS handshake was done: why, if rustls said, else the client left.
                let why = conn.stream.failure().unwrap_or(TlsFailure::Eof);
                self.metrics.tls_failed(why);
            }
            self.release_admission(&conn);
            let room = conn.membership.map(|m| m.room);
            if let Some(r) = room {
                let conns = &mut self.net.conns;
                self.rooms.get_mut(r).remove_member(&mut conn, |moved, at| {
                    if let Some(m) = &mut conns[moved.key].membership {
                        m.at = at;
                    }
                });
            }
            if let Phase::Ws(ws) = &conn.phase {
                self.net.ws_open -= 1;
                if let Some(account) = &ws.account {
                    let me = super::sessions::ConnRef {
                        key: k,
                        id: conn.id,
                    };
                    self.forget_account(account, me);
                }
                match (room, ws.role) {
                    (Some(r), Role::Player(player)) => self.player_gone(r, player),
                    (Some(r), Role::Spectator) => self.rooms.get_mut(r).spectators -= 1,
                    _ => {}
                }
            }
            let reason = conn.closing.map(|c| c.reason).or(conn.dead);
            tracing::debug!(
                conn = conn.id,
                label = reason.map_or("", |r| r.label()),
                "connection closed"
            );
            if conn.closing.is_none() {
                self.metrics.closed(conn.dead.expect("on the dead list"));
            }
        }
        self.net.dead_list = keep_capacity(list, std::mem::take(&mut self.net.dead_list));
    }

    /// Starts a drain: from now on upgrades are refused and `/healthz` says 503. Each room sends its final
    /// update at its next tick, ignoring the high-water mark, and closes its connections with 1001 right
    /// after (`run_room`); the next timer tick closes the connections in no room.
    pub(super) fn begin_drain(&mut self) {
        if self.drain_deadline.is_none() {
            tracing::info!(
                websockets = self.net.ws_open,
                rooms = self.rooms.len(),
                drain_timeout_ms = self.cfg.drain_timeout_ms,
                "draining: final updates, then 1001 to every client"
            );
            self.drain_deadline = Some(self.now + Duration::from_millis(self.cfg.drain_timeout_ms));
            // In a cluster, say so at once: no new rooms or seats are routed here from now on.
            self.cluster_beat(true);
        }
    }

    pub(super) fn drain_finished(&self) -> bool {
        match self.drain_deadline {
            None => false,
            Some(deadline) => self.net.ws_open == 0 || self.now >= deadline,
        }
    }
}
