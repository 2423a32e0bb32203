//! Turn steps 3 and 4: run the due ticks, then build each distinct update once and queue it to every
//! connection that needs it; then the per-tick timers (handshake, ping, idle, close linger).

use super::*;

impl<G: Game, C: Clock> Server<G, C> {
    pub(super) fn run_ticks(&mut self, due: crate::clock::Due) {
        let started = self.clock.now();
        self.metrics.tick_lateness.record(due.lateness);
        self.metrics.ticks_skipped += due.skipped;
        let dt_s = self.schedule.period().as_secs_f32();
        let first = self.world.tick() + 1;
        for _ in 0..due.run {
            let tick = self.world.tick() + 1;
            self.game.step(&mut self.world, tick, dt_s);
            self.world.complete_tick();
            self.metrics.ticks += 1;
        }
        let every = self.cfg.checksum_every_ticks;
        let checksum = every > 0 && (first - 1) / every != self.world.tick() / every;
        let draining = self.drain_deadline.is_some();
        self.send_updates(checksum, draining);
        if draining {
            self.finish_drain();
        }
        self.check_timers();
        self.expire_detached();
        self.accept_pending |= std::mem::take(&mut self.accept_stalled);
        self.metrics
            .tick_duration
            .record(self.clock.now() - started);
    }

    /// Queues the current tick's update to every connection that needs it. `force` (the final update of a
    /// drain) ignores the high-water mark: one more update per connection, then it is closed.
    pub(super) fn send_updates(&mut self, checksum: bool, force: bool) {
        let tick = self.world.tick();
        self.updates.begin(&self.world, checksum);
        for (k, conn) in self.conns.iter_mut() {
            let pending = conn.out.pending();
            let Some(ws) = conn.live_ws() else { continue };
            if ws.echo || ws.role == Role::Pending {
                continue;
            }
            if ws.baseline == Some(tick) {
                continue;
            }
            if !force && pending > self.cfg.send_hwm_bytes {
                self.metrics.updates_skipped += 1;
                if self.now.saturating_duration_since(ws.last_update_at)
                    > Duration::from_millis(self.cfg.lag_limit_ms)
                {
                    self.close_list
                        .push((k, close::LAGGING, CloseReason::Lagging));
                }
                continue;
            }
            let (range, kind) = self.updates.for_baseline(&self.world, ws.baseline);
            match kind {
                UpdateKind::Delta => self.metrics.updates_delta += 1,
                UpdateKind::Coalesced => self.metrics.updates_coalesced += 1,
                UpdateKind::Full => self.metrics.updates_full += 1,
            }
            ws.baseline = Some(tick);
            ws.last_update_at = self.now;
            self.metrics.frames_out += 1;
            match conn.queue(self.updates.bytes(range)) {
                Ok(n) => self.metrics.bytes_out += n as u64,
                Err(_) => {
                    mark_dead(conn, k, CloseReason::IoError, &mut self.dead_list);
                    continue;
                }
            }
            if !conn.out.is_empty() && !conn.on_write_list {
                conn.on_write_list = true;
                self.write_list.push(k);
            }
            if conn.out.pending() > self.cfg.send_limit_bytes {
                self.close_list
                    .push((k, close::SEND_LIMIT, CloseReason::SendLimit));
            }
        }
        self.close_pending();
    }

    pub(super) fn close_pending(&mut self) {
        let mut list = std::mem::take(&mut self.close_list);
        for (k, code, reason) in list.drain(..) {
            let text = match reason {
                CloseReason::Lagging => format!(
                    "too slow: no update could be sent for {} ms",
                    self.cfg.lag_limit_ms
                ),
                CloseReason::SendLimit => {
                    format!("send buffer passed {} bytes", self.cfg.send_limit_bytes)
                }
                CloseReason::IdleTimeout => format!("idle for {} ms", self.cfg.idle_timeout_ms),
                CloseReason::Unauthorized => {
                    format!("no ticket within {} ms", self.cfg.handshake_timeout_ms)
                }
                _ => String::from("closing"),
            };
            self.close(k, code, &text, reason);
        }
        self.close_list = keep_capacity(list, std::mem::take(&mut self.close_list));
    }

    /// Handshake and idle timeouts, pings, and close lingers. Runs once per tick: timers are as precise as
    /// a tick, which is plenty for limits measured in seconds.
    pub(super) fn check_timers(&mut self) {
        let now = self.now;
        let ms = Duration::from_millis;
        let (handshake, ping, idle) = (
            ms(self.cfg.handshake_timeout_ms),
            ms(self.cfg.ping_interval_ms),
            ms(self.cfg.idle_timeout_ms),
        );
        let tickets = self.ticket_secret.is_some();
        let unauthenticated =
            |ws: &WsState| tickets && ws.role == Role::Pending && ws.account.is_none();
        let mut timed_out_http = Vec::new();
        for (k, conn) in self.conns.iter_mut() {
            if conn.dead.is_some() {
                continue;
            }
            if let Some(closing) = conn.closing {
                if now >= closing.deadline {
                    mark_dead(conn, k, closing.reason, &mut self.dead_list);
                }
                continue;
            }
            let quiet = now.saturating_duration_since(conn.last_heard);
            let opened = conn.opened_at;
            let (phase, mut io) = conn.io();
            match phase {
                Phase::Http { .. } => {
                    if now.saturating_duration_since(opened) > handshake {
                        timed_out_http.push(k);
                    }
                }
                Phase::Ws(ws)
                    if unauthenticated(ws) && now.saturating_duration_since(opened) > handshake =>
                {
                    self.close_list
                        .push((k, close::UNAUTHORIZED, CloseReason::Unauthorized));
                }
                Phase::Ws(_) if quiet > idle => {
                    self.close_list
                        .push((k, close::IDLE_TIMEOUT, CloseReason::IdleTimeout));
                }
                Phase::Ws(ws) if quiet > ping && !ws.pinged => {
                    ws.pinged = true;
                    if ws
                        .ctx
                        .write(&mut io, Message::Ping(Default::default()))
                        .is_ok()
                    {
                        let _ = ws.ctx.flush(&mut io);
                    }
                    if !conn.on_write_list {
                        conn.on_write_list = true;
                        self.write_list.push(k);
                    }
                }
                Phase::Ws(_) => {}
            }
        }
        let refusal = http::Refusal {
            status: 408,
            why: "request not completed in time",
        };
        for k in timed_out_http {
            self.refuse_http(k, &refusal, CloseReason::HandshakeTimeout);
        }
        self.close_pending();
    }
}
