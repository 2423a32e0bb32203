//! Turn step 2, read and decode, before a connection is a WebSocket: accepts, HTTP requests (health,
//! metrics, the room list, the web page, the dashboard: `dashboard.rs`) and the upgrade into a room, found or created.
//!
//! Who is accepted, in order: the per-address limits ([`crate::net::peers`], 429); `--max-connections`,
//! beyond which up to `--health-slots` connections may still ask for `/healthz` or `/metrics` (anything
//! else there, and everyone past the slots, 503); out of descriptors, one client at a time through the
//! reserve descriptor (503). Refused connections get one non-blocking write and are closed at once.

use super::room::CreateError;
use super::routes::{self, Entry, Route};
use super::*;
use crate::config::RoomCreation;
use crate::logs::Warning;
use crate::net::http::RETRY_AFTER_S;
use crate::net::peers::{PeerKey, Refused};
use crate::net::rate::Bucket;
use crate::net::tls::{Stream, TlsFailure};
use crate::sim::Opening;
use crate::ticket::TicketError;

/// What a plain HTTP request to a TLS listener gets, in plain text, before the connection is closed.
const NOT_TLS_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Length: 52\r\nConnection: close\r\n\r\n400 Bad Request: this port speaks TLS: use https://\n";

impl<G: Game, C: Clock> Server<G, C> {
    /// Accepts up to `ACCEPTS_PER_TURN_MAX` connections; `accept_pending` stays set while more may wait
    /// (the listener is edge-triggered, so it will not report them again).
    pub(super) fn accept(&mut self) {
        self.net.accept_pending = false;
        if self.now.saturating_duration_since(self.net.peers_swept_at) >= PEER_SWEEP_INTERVAL {
            self.net.peers.sweep(self.now);
            self.net.peers_swept_at = self.now;
        }
        for _ in 0..ACCEPTS_PER_TURN_MAX {
            let (sock, addr) = match self.net.listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.metrics.accept_errors += 1;
                    limited!(self, Warning::AcceptError, warn, error = %e, "accept failed");
                    if socket::out_of_descriptors(&e) && self.refuse_through_reserve() {
                        continue;
                    }
                    // Anything else (or no reserve): leave the rest in the backlog, try again next tick.
                    self.net.accept_stalled = true;
                    return;
                }
            };
            self.metrics.connections_total += 1;
            self.admit(sock, addr);
        }
        self.net.accept_pending = true;
    }

    /// Out of descriptors: gives up the reserve for a moment to accept one waiting client, answer it 503
    /// and close it, so it is not left hanging in the backlog. False if there was no reserve or nobody
    /// could be accepted even so.
    fn refuse_through_reserve(&mut self) -> bool {
        if self.net.reserve_fd.take().is_none() {
            self.net.reserve_fd = socket::open_reserve().ok();
            return false;
        }
        let answered = match self.net.listener.accept() {
            Ok((sock, _)) => {
                self.metrics.connections_total += 1;
                self.refuse_at_accept(sock, 503, "server at connection capacity", RETRY_AFTER_S);
                self.metrics.closed(CloseReason::Rejected);
                true
            }
            Err(_) => false,
        };
        self.net.reserve_fd = socket::open_reserve().ok();
        answered
    }

    /// The per-address limits, then `--max-connections` and the health slots beyond it.
    fn admit(&mut self, sock: TcpStream, addr: SocketAddr) {
        let peer = self.cfg.peer_limits().any().then(|| PeerKey::of(addr.ip()));
        if let Some(key) = peer {
            if let Err(refused) = self.net.peers.admit(key, self.now) {
                let (status, why, after_s, reason) = match refused {
                    Refused::TooManyOpen => (
                        429,
                        "too many connections from this address",
                        RETRY_AFTER_S,
                        CloseReason::AddressConnections,
                    ),
                    Refused::TooFast => (
                        429,
                        "connecting too fast from this address",
                        self.net.peers.retry_after_s(key),
                        CloseReason::AddressRate,
                    ),
                    Refused::TableFull => (
                        503,
                        "too many client addresses",
                        RETRY_AFTER_S,
                        CloseReason::Rejected,
                    ),
                };
                limited!(self, Warning::ConnectionLimit, warn, %addr, label = reason.label(), "connection refused: {why}");
                self.refuse_at_accept(sock, status, why, after_s);
                self.metrics.closed(reason);
                return;
            }
        }
        let spare = self.net.conns.len() - self.net.spare_slots.len() >= self.cfg.max_connections;
        if spare
            && self.net.spare_slots.len() >= self.cfg.health_slots
            && !self.evict_oldest_spare()
        {
            self.release_peer(peer);
            let max = self.cfg.max_connections;
            limited!(self, Warning::ConnectionLimit, warn, %addr, max_connections = max, "connection refused: server at connection capacity");
            self.refuse_at_accept(sock, 503, "server at connection capacity", RETRY_AFTER_S);
            self.metrics.closed(CloseReason::Rejected);
            return;
        }
        match self.register(sock, peer, spare) {
            None => self.release_peer(peer),
            // A health check's request is usually there already: answered now, before another connect
            // could take its slot.
            Some(k) if spare => self.read_http(k),
            Some(_) => {}
        }
    }

    /// Every health slot is taken: the connection that has held one longest gives it up to the newcomer,
    /// unless it is an answer still going out (then the next oldest, if any is not). A health check is
    /// answered as soon as its request is read (right after the accept, see `admit`), so a slot held longer
    /// is one a client is sitting on: idle sockets cannot keep a load balancer's probe out, however many
    /// there are, short of a flood of more than `--health-slots` connects per loop turn. False with no slots.
    fn evict_oldest_spare(&mut self) -> bool {
        let answering = |c: &Conn| c.closing.is_some() && c.has_output();
        let at = self
            .net
            .spare_slots
            .iter()
            .position(|&(k, _)| !answering(&self.net.conns[k]))
            .unwrap_or(0);
        let Some((k, id)) = self.net.spare_slots.remove(at) else {
            return false;
        };
        let conn = &mut self.net.conns[k];
        debug_assert!(
            conn.id == id && conn.spare,
            "spare_slots lists live health slots"
        );
        conn.spare = false;
        self.kill(k, CloseReason::Rejected);
        true
    }

    /// [`refuse_at_accept`], plain or not as this listener is.
    fn refuse_at_accept(
        &self,
        sock: TcpStream,
        status: u16,
        why: &'static str,
        retry_after_s: u64,
    ) {
        refuse_at_accept(sock, self.net.tls.is_none(), status, why, retry_after_s);
    }

    fn release_peer(&mut self, peer: Option<PeerKey>) {
        if let Some(key) = peer {
            self.net.peers.release(key, self.now);
        }
    }

    /// What a connection being reaped held of the per-address table and the health slots.
    pub(super) fn release_admission(&mut self, conn: &Conn) {
        self.release_peer(conn.peer);
        if conn.spare {
            self.net.spare_slots.retain(|&(_, id)| id != conn.id);
        }
    }

    /// Tunes and registers an accepted socket: its slab key, or `None` (counted) if that failed and it is
    /// gone.
    pub(super) fn register(
        &mut self,
        mut sock: TcpStream,
        peer: Option<PeerKey>,
        spare: bool,
    ) -> Option<usize> {
        if socket::tune(&sock, self.cfg.tcp_notsent_lowat_bytes).is_err() {
            self.metrics.closed(CloseReason::IoError);
            return None;
        }
        let entry = self.net.conns.vacant_entry();
        if self
            .net
            .poll
            .registry()
            .register(&mut sock, Token(entry.key()), Interest::READABLE)
            .is_err()
        {
            self.metrics.closed(CloseReason::IoError);
            return None;
        }
        let k = entry.key();
        let stream = match &self.net.tls {
            None => Stream::plain(sock),
            Some(config) => match Stream::tls(sock, config.clone()) {
                Ok(stream) => stream,
                Err(_) => {
                    self.metrics.closed(CloseReason::IoError);
                    return None;
                }
            },
        };
        let mut conn = Conn::new(stream, self.net.next_conn_id, self.now);
        conn.peer = peer;
        conn.spare = spare;
        if spare {
            self.net.spare_slots.push_back((k, conn.id));
        }
        entry.insert(conn);
        self.net.next_conn_id += 1;
        Some(k)
    }

    pub(super) fn read_http(&mut self, k: usize) {
        let max = self.cfg.max_header_bytes;
        let conn = &mut self.net.conns[k];
        if self.matchmaking.contains_key(&conn.id) {
            // Its request is with the matchmaker; the answer closes it.
            return;
        }
        let Phase::Http { buf } = &mut conn.phase else {
            unreachable!("read_http on a WebSocket")
        };
        // Read at most one byte past the head's limit (enough to know it is too large), plus the largest
        // body a route takes.
        let mut chunk = [0u8; 2048];
        let failed = loop {
            let room = (max + 1 + routes::MATCHMAKE_BODY_MAX)
                .saturating_sub(buf.len())
                .min(chunk.len());
            if room == 0 {
                break None;
            }
            self.metrics.socket_reads += 1;
            match conn.stream.read(&mut chunk[..room]) {
                Ok(0) => break Some(CloseReason::Peer),
                Ok(n) => {
                    buf.extend(&chunk[..n]);
                    self.metrics.bytes_in += n as u64;
                    conn.last_heard = self.now;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break None,
                Err(_) if conn.stream.failure() == Some(TlsFailure::NotTls) => {
                    break Some(CloseReason::TlsHandshake)
                }
                Err(_) if conn.stream.handshaking() => break Some(CloseReason::TlsHandshake),
                Err(_) => break Some(CloseReason::IoError),
            }
        };
        if conn.stream.take_handshake_done() {
            self.metrics.tls_handshakes += 1;
        }
        self.after_tls_read(k);
        let conn = &mut self.net.conns[k];
        if let Some(reason) = failed {
            if conn.stream.failure() == Some(TlsFailure::NotTls) {
                // A plain HTTP request on the TLS port: told so in plain text, since it cannot read TLS.
                let _ = std::io::Write::write(conn.stream.tcp(), NOT_TLS_ANSWER);
            }
            self.kill(k, reason);
            return;
        }
        let Phase::Http { buf } = &mut conn.phase else {
            unreachable!("read_http on a WebSocket")
        };
        let spare = conn.spare;
        let request = match buf.parse(max) {
            Ok(None) => return,
            Ok(Some(request)) => request,
            Err(refusal) => return self.refuse_http(k, &refusal, CloseReason::HttpError),
        };
        let arrived = buf.len();
        match routes::route(&request, self.cfg.echo_path.as_deref()) {
            // The body is still arriving (the handshake timeout bounds how long it may take).
            Ok(Route::Matchmake(len)) if arrived < request.head_len + len => {}
            // In a health slot only the health check and the metrics are served.
            Ok(route @ (Route::Health | Route::Metrics)) => self.answer_http(k, route, &request),
            Ok(_) if spare => {
                let refusal = http::Refusal {
                    status: 503,
                    why: "server at connection capacity",
                };
                self.refuse_http(k, &refusal, CloseReason::Rejected)
            }
            Ok(route) => self.answer_http(k, route, &request),
            Err(refusal) => self.refuse_http(k, &refusal, CloseReason::HttpError),
        }
    }

    /// Sends an HTTP answer written by `write` and closes the connection after it.
    pub(super) fn reply_http(
        &mut self,
        k: usize,
        reason: CloseReason,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        self.metrics.http_requests += 1;
        self.net.scratch.clear();
        write(&mut self.net.scratch);
        self.send_scratch(k);
        self.start_close(k, reason);
    }

    pub(super) fn refuse_http(&mut self, k: usize, refusal: &http::Refusal, reason: CloseReason) {
        self.reply_http(k, reason, |out| http::write_refusal(out, refusal));
    }

    /// Answers `route`, the route of `request` (an upgrade hands what follows its head to the WebSocket).
    pub(super) fn answer_http(&mut self, k: usize, route: Route, request: &http::Request) {
        let head_len = request.head_len;
        let draining = self.drain_deadline.is_some();
        let done = CloseReason::HttpDone;
        let json = "application/json";
        match route {
            Route::Health if draining => self.refuse_http(
                k,
                &http::Refusal {
                    status: 503,
                    why: "draining",
                },
                done,
            ),
            Route::Health => {
                let text = self.health_text();
                self.reply_http(k, done, |out| {
                    http::write_response(out, 200, "text/plain; charset=utf-8", text.as_bytes(), "")
                })
            }
            Route::Metrics => {
                let text = self.metrics.render(&self.gauges());
                self.reply_http(k, done, |out| {
                    http::write_response(out, 200, "text/plain; version=0.0.4", text.as_bytes(), "")
                })
            }
            Route::Rooms { after, limit } => {
                let body = self.rooms_json(after.as_deref(), limit);
                let cors = self.cors(request.origin.as_deref());
                self.reply_http(k, done, |out| {
                    http::write_response(out, 200, json, body.as_bytes(), &cors)
                })
            }
            Route::Room(name) => {
                let cors = self.cors(request.origin.as_deref());
                match self.rooms.find(&name) {
                    Some(r) => {
                        let mut body = String::new();
                        self.room_json(&mut body, self.rooms.get(r));
                        self.reply_http(k, done, |out| {
                            http::write_response(out, 200, json, body.as_bytes(), &cors)
                        })
                    }
                    None => {
                        let why = format!("no room named {name}");
                        let refusal = http::Refusal {
                            status: 404,
                            why: &why,
                        };
                        self.reply_http(k, done, |out| {
                            http::write_refusal_with(out, &refusal, RETRY_AFTER_S, &cors)
                        })
                    }
                }
            }
            Route::Matchmake(len) => self.matchmake(k, request, len),
            Route::MatchmakePreflight => {
                let cors = self.cors(request.origin.as_deref());
                let headers = format!(
                    "{cors}Access-Control-Allow-Methods: POST\r\nAccess-Control-Allow-Headers: content-type\r\nAccess-Control-Max-Age: 600\r\n"
                );
                self.reply_http(k, done, |out| {
                    http::write_response(out, 204, "text/plain", b"", &headers)
                })
            }
            Route::Dashboard { data, token } => {
                self.answer_dashboard(k, data, token.as_deref(), request)
            }
            Route::Asset(asset) => self.reply_http(k, done, |out| {
                http::write_response(out, 200, asset.content_type, asset.body, "")
            }),
            Route::Play(_) | Route::Echo(_) if draining => {
                let refusal = http::Refusal {
                    status: 503,
                    why: "server is shutting down",
                };
                self.refuse_http(k, &refusal, CloseReason::HttpError)
            }
            Route::Play(entry) if !self.origin_allowed(entry.upgrade.origin.as_deref()) => {
                self.refuse_origin(k)
            }
            Route::Echo(upgrade) if !self.origin_allowed(upgrade.origin.as_deref()) => {
                self.refuse_origin(k)
            }
            Route::Echo(upgrade) => self.upgrade(k, &upgrade.key, head_len, None, None),
            Route::Play(entry) => match self.enter_room(k, &entry) {
                Ok((r, account)) => self.upgrade(k, &entry.upgrade.key, head_len, Some(r), account),
                Err(refused) => {
                    let refusal = http::Refusal {
                        status: refused.status,
                        why: &refused.why,
                    };
                    let (status, why) = (refusal.status, &refusal.why);
                    let after_s = RETRY_AFTER_S;
                    self.reply_http(k, refused.reason, |out| {
                        http::write_refusal_retry_after(
                            out,
                            &http::Refusal { status, why },
                            after_s,
                        )
                    })
                }
            },
        }
    }

    fn refuse_origin(&mut self, k: usize) {
        let refusal = http::Refusal {
            status: 403,
            why: "origin not allowed",
        };
        self.refuse_http(k, &refusal, CloseReason::HttpError)
    }

    /// The room connection `k`'s upgrade to `/ws` or `/ws/ROOM` enters, found or created (join or
    /// create), and the account of its `?ticket=`; or the HTTP refusal. A ticket on the upgrade is checked
    /// here (401 if bad, or bound to another room); without one, the first message must bring it.
    fn enter_room(
        &mut self,
        k: usize,
        entry: &Entry,
    ) -> Result<(usize, Option<Box<str>>), RoomRefusal> {
        let admit = match &entry.ticket {
            Some(ticket) => self.check_ticket(ticket).map_err(|e| RoomRefusal {
                status: 401,
                why: e.why().into_owned(),
                reason: CloseReason::Unauthorized,
            })?,
            None => None,
        };
        let name = entry.room.as_deref().unwrap_or(&self.cfg.default_room);
        let bound = admit.as_ref().and_then(|a| a.room.clone());
        if let Some(bound) = bound.clone().filter(|bound| **bound != *name) {
            let e = TicketError::OtherRoom { room: bound };
            return Err(RoomRefusal {
                status: 401,
                why: e.why().into_owned(),
                reason: CloseReason::Unauthorized,
            });
        }
        let refused = |status, why: String| RoomRefusal {
            status,
            why,
            reason: CloseReason::RoomRefused,
        };
        let account = admit.map(|a| a.account);
        let kind = match &entry.kind {
            None => None,
            Some(asked) => Some(
                self.rooms
                    .types
                    .find(asked)
                    .ok_or_else(|| refused(400, format!("unknown room type: {asked}")))?,
            ),
        };
        if let Some(r) = self.rooms.find(name) {
            let room = self.rooms.get(r);
            let kind = &self.rooms.types.types[room.kind].name;
            return match &entry.kind {
                Some(asked) if asked != kind => Err(refused(
                    409,
                    format!("room {name} is of type {kind}, not {asked}"),
                )),
                _ => Ok((r, account)),
            };
        }
        let kind = kind.unwrap_or(0);
        let may_create = match self.cfg.room_creation {
            RoomCreation::Open => true,
            RoomCreation::Ticket => bound.as_deref() == Some(name),
            RoomCreation::Off => false,
        };
        if !may_create {
            return Err(refused(404, format!("no room named {name}")));
        }
        let creator = self.net.conns[k].peer;
        if let Some(peer) = creator {
            if !self.net.peers.create_room(peer) {
                let max = self.cfg.max_rooms_per_ip;
                return Err(RoomRefusal {
                    status: 429,
                    why: format!("too many rooms created from this address: {max} open"),
                    reason: CloseReason::RoomRefused,
                });
            }
        }
        let kind_name = self.rooms.types.types[kind].name.clone();
        let opening = Opening {
            name,
            kind: &kind_name,
            options: &entry.options,
        };
        let unix_s = self.clock.unix_time_s();
        let created = self.rooms.create(kind, &opening, creator, self.now, unix_s);
        if let (Err(_), Some(peer)) = (&created, creator) {
            self.net.peers.room_gone(peer, self.now);
        }
        match created {
            Ok(r) => {
                self.metrics.rooms_created += 1;
                let name = name.to_string();
                self.log_room(r, "room created", "upgrade");
                self.cluster_claim(&name);
                Ok((r, account))
            }
            Err(CreateError::Limit) => {
                self.metrics.rooms_refused_limit += 1;
                let max = self.cfg.max_rooms;
                Err(refused(503, format!("room limit reached: {max} rooms")))
            }
            Err(CreateError::Refused(why)) => {
                Err(refused(400, format!("room options refused: {why}")))
            }
        }
    }

    /// The CORS header of the room list, so a page served elsewhere (a game's own site) can read it: any
    /// origin without `--allow-origin`, else only those listed.
    pub(super) fn cors(&self, origin: Option<&str>) -> String {
        match origin {
            _ if self.cfg.allowed_origins.is_empty() => "Access-Control-Allow-Origin: *\r\n".into(),
            Some(origin) if self.origin_allowed(Some(origin)) => {
                format!("Access-Control-Allow-Origin: {origin}\r\nVary: Origin\r\n")
            }
            _ => String::new(),
        }
    }

    /// `--allow-origin`: none given allows every origin, and a request without one (not a browser) is
    /// always allowed.
    pub(super) fn origin_allowed(&self, origin: Option<&str>) -> bool {
        let allowed = &self.cfg.allowed_origins;
        let Some(origin) = origin else { return true };
        allowed.is_empty() || allowed.iter().any(|a| a.eq_ignore_ascii_case(origin))
    }

    /// Turns connection `k` into a WebSocket in room `room` (`None`: the echo, in no room), with `account`
    /// from its upgrade ticket, and sends `Welcome`.
    pub(super) fn upgrade(
        &mut self,
        k: usize,
        key: &str,
        head_len: usize,
        room: Option<usize>,
        account: Option<Box<str>>,
    ) {
        let echo = room.is_none();
        self.metrics.http_requests += 1;
        self.metrics.websockets_total += 1;
        self.net.ws_open += 1;
        let config = WebSocketConfig::default()
            .read_buffer_size(self.cfg.ws_read_buffer_bytes)
            .write_buffer_size(0)
            .max_write_buffer_size(self.cfg.send_limit_bytes)
            .max_message_size(Some(self.cfg.max_message_bytes))
            .max_frame_size(Some(self.cfg.max_message_bytes));
        let conn = &mut self.net.conns[k];
        let Phase::Http { buf } = std::mem::replace(
            &mut conn.phase,
            Phase::Http {
                buf: Default::default(),
            },
        ) else {
            unreachable!("upgrade of a WebSocket")
        };
        // Frames the client sent right behind its request are already in `buf`; the meter counts them too.
        let mut early = buf.into_bytes();
        early.drain(..head_len);
        let fragments_max = match echo {
            true => u32::MAX,
            false => self.cfg.fragments_per_message_max,
        };
        conn.meter.feed(&early, self.now, fragments_max);
        conn.phase = Phase::Ws(Box::new(WsState {
            ctx: WebSocketContext::from_partially_read(early, WsRole::Server, Some(config)),
            baseline: None,
            last_update_at: self.now,
            role: Role::Pending,
            account: None,
            echo,
            pinged: false,
            bucket: Bucket::new(&self.cfg.rate_limit(), self.now),
            caught_up: false,
        }));
        self.net.scratch.clear();
        http::write_upgrade(&mut self.net.scratch, key);
        self.send_scratch(k);
        self.net.conns[k].out.frames_begin_here();
        if let Some(account) = account {
            self.set_account(k, account);
        }
        let Some(r) = room else {
            return self.read_ws(k);
        };
        let member = self.conn_ref(k);
        self.rooms
            .get_mut(r)
            .add_member(r, member, &mut self.net.conns[k]);
        let room = self.rooms.get(r);
        self.net.scratch.clear();
        let welcome = ServerMsg::<(), ()>::Welcome {
            protocol: proto::PROTOCOL_VERSION,
            tick_hz: room.tick_hz,
            tick: room.world.tick(),
            connection_id: self.net.conns[k].id,
            room: room.name.to_string(),
        };
        append_message(&mut self.net.scratch, &welcome);
        self.send_scratch(k);
        self.read_ws(k);
    }

    /// One page of `GET /rooms` (docs/PROTOCOL.md, "Listing rooms").
    fn rooms_json(&self, after: Option<&str>, limit: usize) -> String {
        use std::fmt::Write;
        let mut out = String::from("{\"rooms\":[");
        let mut last = None;
        let mut count = 0;
        for room in self.rooms.page(after, limit) {
            if count > 0 {
                out.push(',');
            }
            self.room_json(&mut out, room);
            last = Some(&room.name);
            count += 1;
        }
        // More may follow only if the page is full; the next one starts after its last name.
        let more = count == limit && self.rooms.page(last.map(|n| &**n), 1).next().is_some();
        match last.filter(|_| more) {
            Some(name) => {
                let _ = write!(out, "],\"next\":\"{name}\"}}");
            }
            None => out.push_str("],\"next\":null}"),
        }
        out
    }

    /// One room's JSON object. Room and type names are of the room-name alphabet: nothing to escape.
    fn room_json(&self, out: &mut String, room: &room::Room<G>) {
        use std::fmt::Write;
        let cap = |max: Option<usize>| max.map_or("null".to_string(), |m| m.to_string());
        let _ = write!(
            out,
            "{{\"name\":\"{}\",\"type\":\"{}\",\"players\":{},\"players_detached\":{},\"spectators\":{},\
             \"max_players\":{},\"max_spectators\":{},\"tick_hz\":{},\"tick\":{},\"created_unix_s\":{}}}",
            room.name,
            self.rooms.types.types[room.kind].name,
            room.players(),
            room.sessions.detached(),
            room.spectators,
            cap(room.max_players),
            cap(room.max_spectators),
            room.tick_hz,
            room.world.tick(),
            room.created_unix_s,
        );
    }
}

/// An upgrade refused for its room: the HTTP status, the text, and the label it is counted under.
struct RoomRefusal {
    status: u16,
    why: String,
    reason: CloseReason,
}

/// Answers a connection refused at accept with an HTTP error, as far as one non-blocking write goes, and
/// closes it: the write side first (FIN after the answer), and what the client already sent is read once
/// so the close is less likely to be a reset that loses the answer. On a TLS listener (`plain` false) the
/// client could not read a plain answer, and a handshake is the very work being refused: it is just closed.
fn refuse_at_accept(
    mut sock: TcpStream,
    plain: bool,
    status: u16,
    why: &'static str,
    retry_after_s: u64,
) {
    use std::io::Write;
    if !plain {
        return;
    }
    let mut out = Vec::new();
    http::write_refusal_retry_after(&mut out, &http::Refusal { status, why }, retry_after_s);
    let _ = sock.write(&out);
    let _ = sock.shutdown(std::net::Shutdown::Write);
    let mut sink = [0u8; 2048];
    let _ = sock.read(&mut sink);
}
