//! The live dashboard (`--dashboard`, docs/OPERATIONS.md, "Dashboard"): `GET /dashboard` is the page
//! (`web/dashboard.html`, embedded by [`crate::assets`]), `GET /dashboard/data` the JSON snapshot it polls
//! once a second. Who may see them is decided here: off is 404; with `--dashboard-token-file` a request
//! must carry the token (`Authorization: Bearer`, else `?token=`; compared in constant time), else 401;
//! `auto` without a token does not answer requests a proxy forwarded (403).
//!
//! What a poll costs the loop: the gauges `/metrics` computes (a pass over the connections and the rooms),
//! a pass over the rooms to pick the [`ROOMS_SHOWN_MAX`] busiest, and one JSON string of bounded size.
//! The charts' history is kept by the page (a ring of samples), not here: the server keeps nothing per
//! viewer, and nothing at all while nobody looks.

use std::collections::BTreeMap;
use std::io;

use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::*;
use crate::assets;
use crate::config::DashboardMode;
use crate::metrics::{HistogramSnapshot, RecentTicks};

/// Rooms listed in one snapshot, the busiest first (players and spectators); `rooms_open` says how many
/// there are in all.
pub const ROOMS_SHOWN_MAX: usize = 50;
/// The longest token `--dashboard-token-file` may hold, in bytes.
const TOKEN_LEN_MAX: usize = 256;

/// The dashboard of a server that serves it.
pub(super) struct Dashboard {
    /// SHA-256 of the token every request must carry; `None`: no token asked.
    token: Option<[u8; 32]>,
    /// `--dashboard auto` without a token: requests a proxy forwarded are refused.
    local_only: bool,
    /// When the server started: the snapshot's `uptime_ms`, the clock the page computes rates on.
    started: Instant,
}

/// Reads `--dashboard-token-file`, if given: at least 16 bytes (like every secret here), at most
/// [`TOKEN_LEN_MAX`], of the characters a URL carries as they are (so `?token=` needs no escaping).
pub(super) fn read_token(cfg: &Config) -> io::Result<Option<Vec<u8>>> {
    let Some(path) = &cfg.dashboard_token_file else {
        return Ok(None);
    };
    let flag = "--dashboard-token-file";
    let token = read_secret(flag, path)?;
    let unreserved = |b: &u8| b.is_ascii_alphanumeric() || b"-._~".contains(b);
    if token.len() > TOKEN_LEN_MAX || !token.iter().all(unreserved) {
        let why = format!(
            "{flag} {}: the token must be at most {TOKEN_LEN_MAX} of A-Z a-z 0-9 - . _ ~",
            path.display()
        );
        return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
    }
    Ok(Some(token))
}

impl Dashboard {
    /// The dashboard `cfg` asks for, with the token [`read_token`] read; `None`: not served.
    pub fn new(cfg: &Config, token: Option<Vec<u8>>, now: Instant) -> Option<Dashboard> {
        cfg.dashboard_served().then(|| Dashboard {
            local_only: cfg.dashboard == DashboardMode::Auto && token.is_none(),
            token: token.map(|t| Sha256::digest(&t).into()),
            started: now,
        })
    }

    pub fn requires_token(&self) -> bool {
        self.token.is_some()
    }

    /// May a request with `token` that a proxy did or did not forward see the dashboard? The refusal
    /// says why not. Digests are compared, in constant time, so neither the token nor its length leaks
    /// through timing.
    fn admit(&self, token: Option<&str>, forwarded: bool) -> Result<(), http::Refusal<'static>> {
        match (&self.token, token) {
            (None, _) if forwarded && self.local_only => Err(http::Refusal::new(
                403,
                "the dashboard is not served through a proxy without --dashboard-token-file",
            )),
            (None, _) => Ok(()),
            (Some(_), None) => Err(http::Refusal::new(
                401,
                "dashboard token required: Authorization: Bearer TOKEN, or ?token=TOKEN",
            )),
            (Some(want), Some(given)) => {
                let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
                match bool::from(want.ct_eq(&given)) {
                    true => Ok(()),
                    false => Err(http::Refusal::new(401, "wrong dashboard token")),
                }
            }
        }
    }
}

/// `GET /dashboard/data` (docs/OPERATIONS.md, "Dashboard"): every number as `/metrics` has it, at one
/// instant.
#[derive(Serialize)]
struct Snapshot<'a> {
    version: &'static str,
    commit: &'static str,
    /// Milliseconds since the server started, on the loop's clock.
    uptime_ms: u64,
    draining: bool,
    connections_open: usize,
    websockets_open: usize,
    /// Players with a connection (`tickcast_players`), and those detached, waiting to resume.
    players: usize,
    players_detached: usize,
    spectators: usize,
    rooms_open: usize,
    queued_bytes: usize,
    /// Counters since start, named as in `/metrics` without `tickcast_` and `_total`.
    totals: BTreeMap<&'static str, u64>,
    /// `tickcast_connections_closed_total`, by reason.
    closes: BTreeMap<&'static str, u64>,
    /// `tickcast_tick_duration_seconds`, every room's ticks.
    tick_duration: HistogramSnapshot,
    /// The busiest rooms, at most [`ROOMS_SHOWN_MAX`].
    rooms: Vec<RoomRow<'a>>,
    /// What a room's `tick_p99_us` covers.
    tick_p99_window: &'static str,
}

#[derive(Serialize)]
struct RoomRow<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    /// Every player, detached ones included (as `GET /rooms` counts them).
    players: usize,
    players_detached: usize,
    spectators: usize,
    max_players: Option<usize>,
    tick_hz: u16,
    tick: u64,
    /// The upper bound of the tick-duration bucket holding the room's 99th percentile over the last
    /// 10 to 20 s, in microseconds; `"+Inf"` past the last bound (250 ms), `null` before any tick.
    tick_p99_us: serde_json::Value,
}

impl<G: Game, C: Clock> Server<G, C> {
    /// Answers `GET /dashboard` (`data` false) or `GET /dashboard/data`, carrying `token`.
    pub(super) fn answer_dashboard(
        &mut self,
        k: usize,
        data: bool,
        token: Option<&str>,
        request: &http::Request,
    ) {
        let Some(dashboard) = &self.dashboard else {
            let refusal = http::Refusal::new(404, "not found");
            return self.refuse_http(k, &refusal, CloseReason::HttpError);
        };
        if let Err(refusal) = dashboard.admit(token, request.forwarded) {
            let (reason, headers) = match refusal.status {
                401 => (
                    CloseReason::Unauthorized,
                    "WWW-Authenticate: Bearer realm=\"tickcast dashboard\"\r\n",
                ),
                _ => (CloseReason::HttpError, ""),
            };
            return self.reply_http(k, reason, |out| {
                http::write_refusal_with(out, &refusal, http::RETRY_AFTER_S, headers)
            });
        }
        let done = CloseReason::HttpDone;
        // The page and its data are this origin's alone: no framing, no other origin's scripts or
        // requests, and no Referer carrying a `?token=` anywhere. Its one image is its empty icon
        // (`data:`), so the browser asks for no /favicon.ico.
        let headers = "Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; \
                       style-src 'unsafe-inline'; connect-src 'self'; img-src data:; frame-ancestors 'none'\r\n\
                       X-Frame-Options: DENY\r\nReferrer-Policy: no-referrer\r\nX-Content-Type-Options: nosniff\r\n";
        if !data {
            let page = assets::DASHBOARD;
            return self.reply_http(k, done, |out| {
                http::write_response(out, 200, page.content_type, page.body, headers)
            });
        }
        let body = self.dashboard_json();
        self.reply_http(k, done, |out| {
            http::write_response(out, 200, "application/json", body.as_bytes(), headers)
        });
    }

    /// The snapshot the page polls.
    fn dashboard_json(&self) -> String {
        let g = self.gauges();
        let m = &self.metrics;
        let started = self.dashboard.as_ref().map_or(self.now, |d| d.started);
        let totals = BTreeMap::from([
            ("connections", m.connections_total),
            ("websockets", m.websockets_total),
            ("bytes_in", m.bytes_in),
            ("bytes_out", m.bytes_out),
            ("frames_in", m.frames_in),
            ("frames_out", m.frames_out),
            ("ticks", m.ticks),
            ("ticks_skipped", m.ticks_skipped),
            ("updates_skipped", m.updates_skipped),
            ("full_snapshots", m.updates_full),
            ("messages_dropped", m.messages_dropped),
            ("slow_consumer_closes", m.slow_consumer_closes()),
            ("rooms_created", m.rooms_created),
        ]);
        let closes = CloseReason::ALL
            .iter()
            .map(|&r| (r.label(), m.closed_count(r)))
            .collect();
        let snapshot = Snapshot {
            version: crate::VERSION,
            commit: crate::COMMIT,
            uptime_ms: self.now.saturating_duration_since(started).as_millis() as u64,
            draining: g.draining,
            connections_open: g.connections_open,
            websockets_open: g.websockets_open,
            players: g.players,
            players_detached: g.players_detached,
            spectators: self.rooms.iter().map(|(_, r)| r.spectators).sum(),
            rooms_open: g.rooms_open,
            queued_bytes: g.queued_bytes,
            totals,
            closes,
            tick_duration: m.tick_duration.snapshot(),
            rooms: self.busiest_rooms(),
            tick_p99_window: "the room's ticks in the last 10 to 20 s",
        };
        serde_json::to_string(&snapshot).expect("the snapshot serializes")
    }

    /// The [`ROOMS_SHOWN_MAX`] rooms with the most players and spectators, busiest first, then by name.
    fn busiest_rooms(&self) -> Vec<RoomRow<'_>> {
        let busy = |r: &room::Room<G>| r.players() + r.spectators;
        let mut rooms: Vec<_> = self.rooms.iter().map(|(_, r)| r).collect();
        let order = |a: &&room::Room<G>, b: &&room::Room<G>| {
            busy(b).cmp(&busy(a)).then_with(|| a.name.cmp(&b.name))
        };
        if rooms.len() > ROOMS_SHOWN_MAX {
            rooms.select_nth_unstable_by(ROOMS_SHOWN_MAX - 1, order);
            rooms.truncate(ROOMS_SHOWN_MAX);
        }
        rooms.sort_unstable_by(order);
        let p99 = |recent: &RecentTicks| match recent.quantile_le_us(0.99) {
            None => serde_json::Value::Null,
            Some(None) => "+Inf".into(),
            Some(Some(us)) => us.into(),
        };
        rooms
            .into_iter()
            .map(|r| RoomRow {
                name: &r.name,
                kind: &self.rooms.types.types[r.kind].name,
                players: r.players(),
                players_detached: r.sessions.detached(),
                spectators: r.spectators,
                max_players: r.max_players,
                tick_hz: r.tick_hz,
                tick: r.world.tick(),
                tick_p99_us: p99(&r.recent_ticks),
            })
            .collect()
    }

    /// Whether this server serves the dashboard, and whether it asks for a token: `None` when off.
    pub fn dashboard_token_required(&self) -> Option<bool> {
        self.dashboard.as_ref().map(Dashboard::requires_token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dashboard(mode: DashboardMode, listen: &str, token: Option<&str>) -> Option<Dashboard> {
        let cfg = Config {
            dashboard: mode,
            listen: listen.parse().unwrap(),
            dashboard_token_file: token.map(|_| "t".into()),
            ..Config::default()
        };
        Dashboard::new(&cfg, token.map(|t| t.as_bytes().to_vec()), Instant::now())
    }

    #[test]
    fn auto_serves_on_loopback_or_with_a_token_and_off_never() {
        use DashboardMode::*;
        assert!(dashboard(Auto, "127.0.0.1:7000", None).is_some());
        assert!(dashboard(Auto, "[::1]:7000", None).is_some());
        assert!(dashboard(Auto, "0.0.0.0:7000", None).is_none());
        assert!(dashboard(Auto, "0.0.0.0:7000", Some("t")).is_some());
        assert!(dashboard(On, "0.0.0.0:7000", None).is_some());
        assert!(dashboard(Off, "127.0.0.1:7000", Some("t")).is_none());
    }

    #[test]
    fn a_token_is_required_exactly_and_auto_without_one_refuses_forwarded_requests() {
        let status =
            |d: &Dashboard, token, forwarded| d.admit(token, forwarded).map_err(|r| r.status);
        let secret = "0123456789abcdef";
        let d = dashboard(DashboardMode::Auto, "0.0.0.0:7000", Some(secret)).unwrap();
        assert_eq!(status(&d, Some(secret), true), Ok(()));
        assert_eq!(status(&d, None, false), Err(401));
        assert_eq!(status(&d, Some("0123456789abcdeF"), false), Err(401));
        assert_eq!(status(&d, Some("0123456789abcdef0"), false), Err(401));
        let open = dashboard(DashboardMode::Auto, "127.0.0.1:7000", None).unwrap();
        assert_eq!(status(&open, None, false), Ok(()));
        assert_eq!(status(&open, None, true), Err(403));
        let on = dashboard(DashboardMode::On, "127.0.0.1:7000", None).unwrap();
        assert_eq!(status(&on, Some("anything"), true), Ok(()));
    }
}
