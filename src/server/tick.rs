//! Turn steps 3 and 4: run each due room's ticks, then build each distinct update once and queue it to
//! every member that needs it, and act on what the game asked of its room; then the process's timers
//! (handshake, ping, idle, close linger, idle rooms), once per `--tick-hz` period.

use super::*;
use crate::metrics::TickPhase;
use crate::sim::PlayerId;

/// Past `--timer-checks-per-pass-min` slab slots, the timer pass checks a share of them each `--tick-hz`
/// period so that every connection is checked once per this.
const TIMER_SWEEP: Duration = Duration::from_millis(250);
/// A burst smaller than this is not worth giving back (see `note_queued`).
const TRIM_PEAK_MIN_BYTES: usize = 8 * 1024 * 1024;
const TRIM_INTERVAL: Duration = Duration::from_secs(1);
/// What one open connection is reckoned to hold beyond its queue (its state and buffers).
const TRIM_BYTES_PER_CONNECTION: usize = 2 * 1024;

impl<G: Game, C: Clock> Server<G, C> {
    /// Room `key` is due: runs its due ticks (its game steps once each), queues their update to its
    /// members, acts on what its game asked (kicks, the end of the room), expires its detached players, and
    /// puts it back on the schedule. A step that asks something of the room is the last of the turn's
    /// steps (the rest count as skipped), so a kick or an end takes effect at the tick it was asked in.
    /// While draining, or when the game ended the room, that update ignores the high-water mark and the
    /// memory budget (it is the final one) and the members are closed right after it.
    pub(super) fn run_room(&mut self, key: usize) {
        let started = self.clock.now();
        let room = self.rooms.get_mut(key);
        let due = room.schedule.due(self.now);
        self.metrics.tick_lateness.record(due.lateness);
        self.metrics.ticks_skipped += due.skipped;
        let dt_s = room.schedule.period().as_secs_f32();
        let first = room.world.tick() + 1;
        let mut ran = 0;
        while ran < due.run && room.control.is_empty() {
            let tick = room.world.tick() + 1;
            room.game
                .step(&mut room.world, tick, dt_s, &mut room.control);
            room.world.complete_tick();
            ran += 1;
        }
        self.metrics.ticks += u64::from(ran);
        self.metrics.ticks_skipped += u64::from(due.run - ran);
        let every = self.cfg.checksum_every_ticks;
        let checksum = every > 0 && (first - 1) / every != room.world.tick() / every;
        let draining = self.drain_deadline.is_some();
        let last = draining || room.control.ended.is_some();
        let stepped = self.clock.now();
        self.metrics.tick_phases[TickPhase::Step as usize].record(stepped - started);
        self.send_updates(key, checksum, last, stepped);
        self.deliver_outbox(key);
        let alive = self.obey_game(key);
        if alive {
            if draining {
                self.close_members(key, Close::Shutdown);
            }
            self.expire_detached(key);
            self.rooms.scheduled(key);
        }
        let took = self.clock.now() - started;
        self.metrics.tick_duration.record(took);
        if alive {
            self.rooms.get_mut(key).recent_ticks.record(took, self.now);
        }
    }

    /// Kicks the players room `key`'s game asked to kick, and ends the room if it asked; false when the
    /// room is gone.
    fn obey_game(&mut self, key: usize) -> bool {
        let room = self.rooms.get_mut(key);
        if room.control.kicks.is_empty() && room.control.ended.is_none() {
            return true;
        }
        let mut control = std::mem::take(&mut room.control);
        for (player, why) in control.kicks.drain(..) {
            self.kick(key, player, why);
        }
        let room = self.rooms.get_mut(key);
        match control.ended.take() {
            Some(why) => {
                self.end_room(key, why);
                false
            }
            None => {
                room.control = control;
                true
            }
        }
    }

    /// The game ended room `key`: every connection in it has had this tick's update and is closed with
    /// 4007; its players are gone (no `leave` calls: the game goes with the room) and the name is free. The
    /// default room is opened anew at once, so plain `/ws` always has a room.
    fn end_room(&mut self, key: usize, why: String) {
        let permanent = self.close_room(key, Close::RoomEnded(why));
        self.metrics.rooms_ended += 1;
        if permanent {
            match self.rooms.open_default(self.now, self.clock.unix_time_s()) {
                Ok(r) => {
                    self.metrics.rooms_created += 1;
                    self.log_room(r, "room created", "default");
                }
                // Its type's constructor refused what it accepted at start: a bug of the game's.
                Err(e) => tracing::error!(error = %e, "cannot open the default room again"),
            }
        }
    }

    /// Closes every connection in room `key` with `close` and removes the room (its players go with its
    /// game, without `leave` calls); whether it was the default room.
    pub(super) fn close_room(&mut self, key: usize, close: Close) -> bool {
        let room = self.rooms.get_mut(key);
        let members = std::mem::take(&mut room.members);
        for member in members {
            let conn = &mut self.net.conns[member.key];
            conn.membership = None;
            if let Some(ws) = conn.ws_mut() {
                ws.role = Role::Pending;
            }
            self.close(member.key, close.clone());
        }
        self.log_room(key, "room disposed", close.counted_as().label());
        self.drop_room(key).permanent
    }

    /// A room's lifecycle event (`what`: created or disposed, and why), bounded like the warnings.
    pub(super) fn log_room(&mut self, key: usize, what: &'static str, why: &'static str) {
        let room = self.rooms.get(key);
        let kind = &self.rooms.types.types[room.kind].name;
        limited!(self, crate::logs::Warning::Room, info, room = %room.name, r#type = %kind, reason = why, "{what}");
    }

    /// Removes room `key`, empty of connections, gives its creator's address its room back and, in a
    /// cluster, its name back to the directory.
    fn drop_room(&mut self, key: usize) -> room::Room<G> {
        let room = self.rooms.remove(key);
        if let Some(creator) = room.creator {
            self.net.peers.room_gone(creator, self.now);
        }
        if !room.permanent {
            let beat = self.rooms.beat(&room);
            self.cluster_release(beat);
        }
        room
    }

    /// Closes every connection in room `key` with `close`.
    pub(super) fn close_members(&mut self, key: usize, close: Close) {
        let room = self.rooms.get_mut(key);
        for i in 0..room.members.len() {
            let k = self.rooms.get(key).members[i].key;
            self.close(k, close.clone());
        }
    }

    /// The process's timers, once per `--tick-hz` period: connection timeouts and pings, the count of
    /// bytes queued, giving memory back, idle rooms, a stalled accept; while draining, the connections in
    /// no room (the echo).
    pub(super) fn run_timers(&mut self) {
        let started = self.clock.now();
        self.run_timers_now();
        self.metrics.tick_phases[TickPhase::Timers as usize].record(self.clock.now() - started);
    }

    fn run_timers_now(&mut self) {
        self.check_timers();
        // Only a connection on the write list or waiting for WRITABLE has bytes queued.
        let conns = &self.net.conns;
        let queued = |k: &usize| conns.get(*k).map_or(0, |c| c.queued());
        let waiting = self.net.backlogged.iter();
        let on_list = self.net.write_list.iter();
        self.queued_estimate = on_list.map(queued).sum::<usize>()
            + waiting
                .filter(|k| conns.get(**k).is_some_and(|c| !c.on_write_list))
                .map(queued)
                .sum::<usize>();
        self.note_queued(self.queued_estimate);
        self.net.accept_pending |= std::mem::take(&mut self.net.accept_stalled);
        let idle = Duration::from_millis(self.cfg.room_idle_ms);
        let mut list = std::mem::take(&mut self.idle_rooms);
        self.rooms.idle(self.now, idle, &mut list);
        for &key in &list {
            self.log_room(key, "room disposed", "idle");
            self.drop_room(key);
            self.metrics.rooms_disposed_idle += 1;
        }
        self.idle_rooms = list;
        self.cap_detached();
        self.cluster_beat(false);
        if let Some(agones) = &self.agones {
            // The loop ran its timers: Health may go out (agones.rs, the stall rule).
            agones.beat(self.rooms.iter().map(|(_, r)| r.sessions.attached()).sum());
        }
        if self.drain_deadline.is_some() {
            let roomless: Vec<usize> = self
                .net
                .conns
                .iter_mut()
                .filter(|(_, c)| c.membership.is_none())
                .filter_map(|(k, c)| c.live_ws().map(|_| k))
                .collect();
            for k in roomless {
                self.close(k, Close::Shutdown);
            }
        }
    }

    /// Queues room `key`'s current tick's update to every member that needs it. `force` (the final update
    /// of a drain) ignores the high-water mark and the memory budget: one more update per connection, then
    /// it is closed. `started` is when the room's steps ended (the encode phase's start).
    ///
    /// Memory: a connection above `--send-hwm-bytes` is skipped. While the bytes queued across all
    /// connections are above `--queued-bytes-max`, so is a connection with anything queued, and a catch-up
    /// update (a `Full`, a coalesced delta) larger than `--send-hwm-bytes`: what still goes out is the
    /// tick's shared delta and small catch-ups, to connections that keep up (nothing queued), which write
    /// them straight to their sockets. A connection skipped for its own queue that stays behind is closed:
    /// after `--first-update-lag-limit-ms` if it never took an update whole, else after `--lag-limit-ms`
    /// (one held back for the budget with nothing queued is not: see [`skipped`]).
    pub(super) fn send_updates(
        &mut self,
        key: usize,
        checksum: bool,
        force: bool,
        started: Instant,
    ) {
        let room = self.rooms.get_mut(key);
        if room.spectators + room.sessions.attached() == 0 {
            // Nobody to send to (a room kept for its detached players, or whose connections have not said
            // Hello or Watch yet): nothing to encode.
            return;
        }
        let tick = room.world.tick();
        // The world's own last change, not this tick's delta: a late turn runs several steps, and a room
        // without viewers steps without fan-outs.
        let changed_at = room.world.changed_at();
        let skip_unchanged = self.cfg.skip_unchanged_updates && !force;
        if skip_unchanged && room.members_current.is_some_and(|t| t >= changed_at) {
            // An idle room of members that hold its world: nothing to encode or send, nobody to visit.
            room.quiet_at = self.now;
            for phase in [TickPhase::Encode, TickPhase::Fanout] {
                self.metrics.tick_phases[phase as usize].record(Duration::ZERO);
            }
            return;
        }
        room.updates.begin(&room.world, checksum);
        room.updates.encode_shared(&room.world);
        let encoded = self.clock.now();
        self.metrics.tick_phases[TickPhase::Encode as usize].record(encoded - started);
        let mut all_current = true;
        let mut queued = self.queued_estimate;
        let (hwm, budget) = (self.cfg.send_hwm_bytes, self.cfg.queued_bytes_max);
        // The room's members, not every connection.
        for &member in &room.members {
            let k = member.key;
            let conn = &mut self.net.conns[k];
            debug_assert_eq!(conn.id, member.id, "a room's members are live connections");
            let pending = conn.queued();
            let Some(ws) = conn.live_ws() else { continue };
            if ws.echo || ws.role == Role::Pending {
                continue;
            }
            if ws.baseline == Some(tick) {
                continue;
            }
            if skip_unchanged && ws.baseline.is_some_and(|b| b >= changed_at) {
                // It holds the current world: nothing to send, and it is not behind.
                ws.last_update_at = self.now;
                continue;
            }
            // Ticks whose fan-out was skipped for an idle room were updates it needed none of.
            ws.last_update_at = ws.last_update_at.max(room.quiet_at);
            let over_budget = !force && queued > budget;
            // Held back: `Err(false)` for its own queue, `Err(true)` for the memory budget.
            let update = if !force && pending > hwm {
                Err(false)
            } else if over_budget && pending > 0 {
                Err(true)
            } else {
                let (range, kind) = room.updates.for_baseline(&room.world, ws.baseline);
                match over_budget && kind != UpdateKind::Delta && range.len() > hwm {
                    true => Err(true),
                    false => Ok((range, kind)),
                }
            };
            let (range, kind) = match update {
                Ok(update) => update,
                Err(deferred) => {
                    all_current = false;
                    let (metrics, cfg) = (&mut self.metrics, &self.cfg);
                    if let Some(close) = skipped(metrics, cfg, self.now, ws, deferred, pending) {
                        self.net.close_list.push((k, close));
                    }
                    continue;
                }
            };
            match kind {
                UpdateKind::Delta => self.metrics.updates_delta += 1,
                UpdateKind::Coalesced => self.metrics.updates_coalesced += 1,
                UpdateKind::Full => self.metrics.updates_full += 1,
            }
            ws.baseline = Some(tick);
            ws.last_update_at = self.now;
            self.metrics.frames_out += 1;
            match conn.queue(room.updates.bytes(range)) {
                Ok(n) => self.metrics.bytes_out += n as u64,
                Err(_) => {
                    mark_dead(conn, k, CloseReason::IoError, &mut self.net.dead_list);
                    continue;
                }
            }
            queued = (queued + conn.queued()).saturating_sub(pending);
            if !conn.has_output() {
                conn.note_drained();
            } else if !conn.on_write_list {
                conn.on_write_list = true;
                self.net.write_list.push(k);
            }
            if conn.queued() > self.cfg.send_limit_bytes {
                self.net.close_list.push((k, Close::SendLimit));
            }
        }
        room.members_current = all_current.then_some(tick);
        self.queued_estimate = queued;
        self.close_pending();
        self.metrics.tick_phases[TickPhase::Fanout as usize].record(self.clock.now() - encoded);
    }

    /// `--detached-max` over the whole process: past it, the longest-detached players of any room leave.
    /// Counting is a sum over the rooms; the scan of every session happens only when over the cap (a burst
    /// of drops), where sorting is fine.
    fn cap_detached(&mut self) {
        let detached: usize = self.rooms.iter().map(|(_, r)| r.sessions.detached()).sum();
        if detached <= self.cfg.detached_max {
            return;
        }
        let mut by_age: Vec<(Instant, usize, PlayerId)> = Vec::with_capacity(detached);
        for (key, room) in self.rooms.iter() {
            by_age.extend(
                room.sessions
                    .detached_since()
                    .map(|(since, p)| (since, key, p)),
            );
        }
        by_age.sort_unstable();
        for &(_, key, player) in &by_age[..detached - self.cfg.detached_max] {
            self.metrics.sessions_expired += 1;
            self.end_player(key, player);
        }
    }

    /// Gives memory back to the operating system after a burst: once the estimate (bytes queued plus a
    /// allowance per connection) has fallen to a quarter of a peak of at least `TRIM_PEAK_MIN_BYTES`, at
    /// most once per `TRIM_INTERVAL`. The allocator keeps freed memory for reuse otherwise, so the RSS of a
    /// burst (a thousand stalled spectators of a big world) would stay after they are gone.
    fn note_queued(&mut self, queued: usize) {
        let estimate = queued + self.net.conns.len() * TRIM_BYTES_PER_CONNECTION;
        self.memory_peak = self.memory_peak.max(estimate);
        let quiet = self.now.saturating_duration_since(self.last_trim) >= TRIM_INTERVAL;
        if self.memory_peak >= TRIM_PEAK_MIN_BYTES && estimate <= self.memory_peak / 4 && quiet {
            release_free_memory();
            self.metrics.memory_trims += 1;
            self.memory_peak = estimate;
            self.last_trim = self.now;
        }
    }

    pub(super) fn close_pending(&mut self) {
        let mut list = std::mem::take(&mut self.net.close_list);
        for (k, close) in list.drain(..) {
            self.close(k, close);
        }
        self.net.close_list = keep_capacity(list, std::mem::take(&mut self.net.close_list));
    }

    /// Handshake, frame and idle timeouts, pings, and close lingers. Runs once per timer tick (a
    /// `--tick-hz` period): timers are as precise as a tick, which is plenty for limits in seconds.
    pub(super) fn check_timers(&mut self) {
        let now = self.now;
        let ms = Duration::from_millis;
        let (handshake, frame, ping, idle) = (
            ms(self.cfg.handshake_timeout_ms),
            ms(self.cfg.frame_timeout_ms),
            ms(self.cfg.ping_interval_ms),
            ms(self.cfg.idle_timeout_ms),
        );
        let tickets = self.ticket_secret.is_some();
        let tls_handshake = ms(self.cfg.tls_handshake_timeout_ms);
        let mut timed_out_http = Vec::new();
        let mut tls_timed_out = Vec::new();
        // Every connection each pass while there are few (`--timer-checks-per-pass-min`); past that a
        // slice, so that each is checked at least once per TIMER_SWEEP (a check costs a cache miss or two).
        let slots = self.net.conns.capacity();
        let passes =
            (TIMER_SWEEP.as_millis() as usize * usize::from(self.cfg.tick_hz) / 1000).max(1);
        let checks = slots
            .div_ceil(passes)
            .max(self.cfg.timer_checks_per_pass_min)
            .min(slots);
        let from = self.net.timer_cursor % slots.max(1);
        self.net.timer_cursor = (from + checks) % slots.max(1);
        for k in (from..slots).chain(0..from).take(checks) {
            let Some(conn) = self.net.conns.get_mut(k) else {
                continue;
            };
            if conn.dead.is_some() {
                continue;
            }
            if let Some(closing) = conn.closing {
                if now >= closing.deadline {
                    mark_dead(conn, k, closing.reason, &mut self.net.dead_list);
                }
                continue;
            }
            let quiet = now.saturating_duration_since(conn.last_heard);
            let opened = now.saturating_duration_since(conn.opened_at);
            let frame_started = conn.meter.partial_since;
            let handshaking = conn.stream.handshaking();
            let (phase, mut io) = conn.io();
            match phase {
                // A TLS handshake not done in time: dropped, nothing more to say (it cannot be read).
                Phase::Http { .. } if handshaking && opened > tls_handshake => {
                    tls_timed_out.push(k);
                }
                Phase::Http { .. } => {
                    if opened > handshake {
                        timed_out_http.push(k);
                    }
                }
                // Every connection says who it is in time, or it would hold a slot by answering pings.
                Phase::Ws(ws) if ws.role == Role::Pending && !ws.echo && opened > handshake => {
                    let close = match tickets && ws.account.is_none() {
                        true => Close::NoTicket,
                        false => Close::NoHello,
                    };
                    self.net.close_list.push((k, close));
                }
                // A frame trickled in byte by byte keeps the idle timer quiet; this catches it.
                Phase::Ws(_)
                    if frame_started.is_some_and(|t| now.saturating_duration_since(t) > frame) =>
                {
                    self.net.close_list.push((k, Close::FrameTimeout));
                }
                Phase::Ws(_) if quiet > idle => {
                    self.net.close_list.push((k, Close::Idle));
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
                        self.net.write_list.push(k);
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
        for k in tls_timed_out {
            self.net.conns[k]
                .stream
                .fail(crate::net::tls::TlsFailure::Timeout);
            self.kill(k, CloseReason::TlsHandshake);
        }
        self.close_pending();
    }
}

/// Returns the allocator's free memory to the operating system (glibc's `malloc_trim`; elsewhere nothing).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers; it only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Counts an update not sent to a connection, and says how to close it once it has been behind for its
/// lag limit. `deferred`: held back for the process-wide memory budget rather than for its
/// own queue. A deferred connection with nothing queued (`pending` 0) has taken everything it was sent and
/// waits only on others, so its lag clock does not run out meanwhile; it holds no memory, so such
/// connections cannot keep the server over its budget by themselves. One with bytes still queued is
/// judged as any other: a client that never reads cannot hide behind the budget.
fn skipped(
    metrics: &mut Metrics,
    cfg: &Config,
    now: Instant,
    ws: &WsState,
    deferred: bool,
    pending: usize,
) -> Option<Close> {
    metrics.updates_skipped += 1;
    metrics.updates_deferred += u64::from(deferred);
    if deferred && pending == 0 {
        return None;
    }
    let (limit_ms, close) = match ws.baseline.is_some() && !ws.caught_up {
        true => (cfg.first_update_lag_limit_ms, Close::FirstUpdateLagging),
        false => (cfg.lag_limit_ms, Close::Lagging),
    };
    let behind = now.saturating_duration_since(ws.last_update_at);
    (behind > Duration::from_millis(limit_ms)).then_some(close)
}
