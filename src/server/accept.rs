//! Turn step 2, read and decode, before a connection is a WebSocket: accepts, HTTP requests (health,
//! metrics, the web page) and the upgrade.

use super::*;
use crate::net::rate::Bucket;
use crate::net::ticket::TicketError;

impl<G: Game, C: Clock> Server<G, C> {
    /// Accepts up to `ACCEPTS_PER_TURN_MAX` connections; `accept_pending` stays set while more may wait
    /// (the listener is edge-triggered, so it will not report them again).
    pub(super) fn accept(&mut self) {
        self.accept_pending = false;
        for _ in 0..ACCEPTS_PER_TURN_MAX {
            let (sock, _) = match self.listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // EMFILE and friends: leave the rest in the backlog and try again next tick.
                Err(_) => {
                    self.accept_stalled = true;
                    return;
                }
            };
            self.metrics.connections_total += 1;
            if self.conns.len() >= self.cfg.max_connections {
                refuse_at_capacity(sock);
                self.metrics.closed(CloseReason::Rejected);
                continue;
            }
            self.register(sock);
        }
        self.accept_pending = true;
    }

    pub(super) fn register(&mut self, mut sock: TcpStream) {
        if socket::tune(&sock, self.cfg.tcp_notsent_lowat_bytes).is_err() {
            self.metrics.closed(CloseReason::IoError);
            return;
        }
        let entry = self.conns.vacant_entry();
        if self
            .poll
            .registry()
            .register(&mut sock, Token(entry.key()), Interest::READABLE)
            .is_err()
        {
            self.metrics.closed(CloseReason::IoError);
            return;
        }
        entry.insert(Conn::new(sock, self.next_conn_id, self.now));
        self.next_conn_id += 1;
    }

    pub(super) fn read_http(&mut self, k: usize) {
        let max = self.cfg.max_header_bytes;
        let conn = &mut self.conns[k];
        let Phase::Http { buf } = &mut conn.phase else {
            unreachable!("read_http on a WebSocket")
        };
        // Read at most one byte past the limit: enough to know the head is too large.
        let mut chunk = [0u8; 2048];
        let failed = loop {
            let room = (max + 1).saturating_sub(buf.len()).min(chunk.len());
            if room == 0 {
                break None;
            }
            match conn.sock.read(&mut chunk[..room]) {
                Ok(0) => break Some(CloseReason::Peer),
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    self.metrics.bytes_in += n as u64;
                    conn.last_heard = self.now;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break None,
                Err(_) => break Some(CloseReason::IoError),
            }
        };
        if let Some(reason) = failed {
            return self.kill(k, reason);
        }
        match http::route_with_echo(buf, max, self.cfg.echo_path.as_deref()) {
            Ok(None) => {}
            Ok(Some(route)) => self.answer_http(k, route),
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
        self.scratch.clear();
        write(&mut self.scratch);
        self.send_scratch(k);
        self.start_close(k, reason);
    }

    pub(super) fn refuse_http(&mut self, k: usize, refusal: &http::Refusal, reason: CloseReason) {
        self.reply_http(k, reason, |out| http::write_refusal(out, refusal));
    }

    pub(super) fn answer_http(&mut self, k: usize, route: http::Route) {
        use http::Route;
        let draining = self.drain_deadline.is_some();
        let done = CloseReason::HttpDone;
        match route {
            Route::Health if draining => self.refuse_http(
                k,
                &http::Refusal {
                    status: 503,
                    why: "draining",
                },
                done,
            ),
            Route::Health => self.reply_http(k, done, |out| {
                http::write_response(out, 200, "text/plain; charset=utf-8", b"ok\n", "")
            }),
            Route::Metrics => {
                let text = self.metrics.render(&self.gauges());
                self.reply_http(k, done, |out| {
                    http::write_response(out, 200, "text/plain; version=0.0.4", text.as_bytes(), "")
                })
            }
            Route::Asset(asset) => self.reply_http(k, done, |out| {
                http::write_response(out, 200, asset.content_type, asset.body, "")
            }),
            Route::Upgrade { .. } if draining => {
                let refusal = http::Refusal {
                    status: 503,
                    why: "server is shutting down",
                };
                self.refuse_http(k, &refusal, CloseReason::HttpError)
            }
            Route::Upgrade {
                origin: Some(origin),
                ..
            } if !self.origin_allowed(&origin) => {
                let refusal = http::Refusal {
                    status: 403,
                    why: "origin not allowed",
                };
                self.refuse_http(k, &refusal, CloseReason::HttpError)
            }
            Route::Upgrade {
                key,
                head_len,
                echo,
                ticket,
                ..
            } => match self.upgrade_ticket(ticket.as_deref(), echo) {
                Ok(account) => self.upgrade(k, &key, head_len, echo, account),
                Err(e) => {
                    let refusal = http::Refusal {
                        status: 401,
                        why: &e.why(),
                    };
                    self.refuse_http(k, &refusal, CloseReason::Unauthorized)
                }
            },
        }
    }

    /// A `?ticket=` on the upgrade is checked there (401 if bad); its player id is the connection's account.
    /// Without one, the first message must bring it.
    fn upgrade_ticket(
        &self,
        ticket: Option<&str>,
        echo: bool,
    ) -> Result<Option<Box<str>>, TicketError> {
        match ticket {
            Some(ticket) if !echo => self.check_ticket(ticket),
            _ => Ok(None),
        }
    }

    /// `--allow-origin`: none given allows every origin.
    fn origin_allowed(&self, origin: &str) -> bool {
        let allowed = &self.cfg.allowed_origins;
        allowed.is_empty() || allowed.iter().any(|a| a.eq_ignore_ascii_case(origin))
    }

    pub(super) fn upgrade(
        &mut self,
        k: usize,
        key: &str,
        head_len: usize,
        echo: bool,
        account: Option<Box<str>>,
    ) {
        self.metrics.http_requests += 1;
        self.metrics.websockets_total += 1;
        self.ws_open += 1;
        let config = WebSocketConfig::default()
            .read_buffer_size(self.cfg.ws_read_buffer_bytes)
            .write_buffer_size(0)
            .max_write_buffer_size(self.cfg.send_limit_bytes)
            .max_message_size(Some(self.cfg.max_message_bytes))
            .max_frame_size(Some(self.cfg.max_message_bytes));
        let conn = &mut self.conns[k];
        let Phase::Http { buf } =
            std::mem::replace(&mut conn.phase, Phase::Http { buf: Vec::new() })
        else {
            unreachable!("upgrade of a WebSocket")
        };
        // Frames the client sent right behind its request are already in `buf`; the meter counts them too.
        let early = buf[head_len..].to_vec();
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
            account,
            echo,
            pinged: false,
            bucket: Bucket::new(&self.cfg.rate_limit(), self.now),
            caught_up: false,
        }));
        self.scratch.clear();
        http::write_upgrade(&mut self.scratch, key);
        self.send_scratch(k);
        self.conns[k].out.frames_begin_here();
        if echo {
            return self.read_ws(k);
        }
        self.scratch.clear();
        let welcome = ServerMsg::<(), ()>::Welcome {
            protocol: proto::PROTOCOL_VERSION,
            tick_hz: self.cfg.tick_hz,
            tick: self.world.tick(),
            connection_id: self.conns[k].id,
        };
        append_message(&mut self.scratch, &welcome);
        self.send_scratch(k);
        self.read_ws(k);
    }
}
