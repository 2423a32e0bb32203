//! `POST /matchmake` (docs/PROTOCOL.md, "Matchmaking"): where a player should connect to play in a room
//! by name, or in any room of a type with a free seat. Every process answers it.
//!
//! Standalone, the answer is this process (a path to resolve against the request's URL). In a cluster the
//! request goes to the Redis helper (`crate::cluster`), which reads the directory and answers with the
//! owner of the room, or reserves a new room's name for the least loaded process; the connection waits
//! (in `Server::matchmaking`, never on the loop) and the loop then signs a seat ticket for that room,
//! player and process with the cluster's secret. Every answer is one line of JSON.

use serde::Deserialize;

use super::*;
use crate::cluster::{Ask, MatchError, Placement, SEAT_TICKET_LIFETIME};
use crate::config::RoomCreation;
use crate::sim::room::valid_room_name;
use crate::ticket;

/// A request waiting for the cluster's matchmaker.
pub(super) struct Waiting {
    player: String,
    /// The request named a type: the connect URL says it, so the room is created of that type.
    kind_given: bool,
    cors: String,
}

/// The request's JSON body. Unknown fields are ignored (a newer client may send more).
#[derive(Debug, Deserialize)]
struct Body {
    room: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    player: Option<String>,
    ticket: Option<String>,
}

/// A request, read and checked.
struct Request {
    room: Option<String>,
    /// The type asked for, or the default type.
    kind: String,
    kind_given: bool,
    player: String,
}

type Refused = (u16, String);

impl<G: Game, C: Clock> Server<G, C> {
    /// Answers (or, in a cluster, hands on) connection `k`'s `POST /matchmake`, whose body of `len` bytes
    /// has arrived behind the head.
    pub(super) fn matchmake(&mut self, k: usize, head: &http::Request, len: usize) {
        let cors = self.cors(head.origin.as_deref());
        let Phase::Http { buf } = &self.net.conns[k].phase else {
            unreachable!("matchmake on a WebSocket")
        };
        let body = &buf.bytes()[head.head_len..head.head_len + len];
        let request = match self.read_request(body) {
            Ok(request) => request,
            Err((status, why)) => return self.answer_error(k, status, &why, &cors),
        };
        let draining = self.drain_deadline.is_some();
        let id = self.net.conns[k].id;
        let Some(cluster) = &mut self.cluster else {
            if draining {
                return self.answer_error(k, 503, "server is shutting down", &cors);
            }
            return match self.place_here(&request) {
                Ok(placement) => {
                    self.answer_placed(k, &request.player, placement, request.kind_given, &cors)
                }
                Err((status, why)) => self.answer_error(k, status, &why, &cors),
            };
        };
        if cluster.down.is_some() {
            let why = "matchmaking unavailable: redis unreachable";
            return self.answer_error(k, 503, why, &cors);
        }
        let ask = Ask {
            conn: (k, id),
            room: request.room,
            kind: request.kind,
            asked_at: self.now,
        };
        if !cluster.ask(ask) {
            self.metrics.matchmake_refused += 1;
            return self.answer_error(k, 503, "matchmaker busy: try again", &cors);
        }
        let waiting = Waiting {
            player: request.player,
            kind_given: request.kind_given,
            cors,
        };
        self.matchmaking.insert(id, waiting);
    }

    /// The matchmaker answered connection `conn`'s request (it may have gone meanwhile).
    pub(super) fn answer_placement(
        &mut self,
        (k, id): (usize, u64),
        result: Result<Placement, MatchError>,
    ) {
        let Some(waiting) = self.matchmaking.remove(&id) else {
            return;
        };
        let alive = self
            .net
            .conns
            .get(k)
            .is_some_and(|c| c.id == id && c.dead.is_none() && c.closing.is_none());
        if !alive {
            return;
        }
        let cors = waiting.cors;
        match result {
            Ok(placement) => {
                self.answer_placed(k, &waiting.player, placement, waiting.kind_given, &cors)
            }
            Err(e) => {
                let status = match e {
                    MatchError::Full(_) => 409,
                    _ => 503,
                };
                let why = match e {
                    MatchError::Unavailable => "matchmaking unavailable: redis unreachable".into(),
                    MatchError::NoCapacity => "no process can take a new room".into(),
                    MatchError::Draining(room) => format!("room {room} is on a draining process"),
                    MatchError::Full(room) => format!("room {room} is full"),
                    MatchError::Busy => "matchmaker busy: try again".into(),
                };
                self.answer_error(k, status, &why, &cors)
            }
        }
    }

    /// Reads and checks the body: a room or a type (or both), and who the player is.
    fn read_request(&self, body: &[u8]) -> Result<Request, Refused> {
        let bad = |why: &str| (400, why.to_string());
        let body: Body = serde_json::from_slice(body).map_err(|_| {
            bad("malformed matchmaking request: a JSON object with \"room\" or \"type\"")
        })?;
        if body.room.is_none() && body.kind.is_none() {
            return Err(bad("name a \"room\" or a room \"type\""));
        }
        if body.room.as_deref().is_some_and(|r| !valid_room_name(r)) {
            return Err(bad("bad room name: 1 to 64 of A-Z a-z 0-9 _ -"));
        }
        let types = &self.rooms.types;
        let kind = match &body.kind {
            None => types.types[0].name.clone(),
            Some(kind) if types.find(kind).is_some() => kind.clone(),
            Some(kind) if valid_room_name(kind) => {
                return Err(bad(&format!("unknown room type: {kind}")))
            }
            Some(_) => return Err(bad("bad room type: 1 to 64 of A-Z a-z 0-9 _ -")),
        };
        if body.room.as_deref() == Some(&*self.cfg.default_room) {
            return Err(bad(
                "the default room is each process's own: connect to /ws",
            ));
        }
        let player = self.player_of(&body)?;
        Ok(Request {
            room: body.room,
            kind_given: body.kind.is_some(),
            kind,
            player,
        })
    }

    /// Who asks: the player of its ticket where the backend's tickets are required (a seat ticket from
    /// an earlier answer also says who), else the `player` it names, else a fresh guest id.
    fn player_of(&self, body: &Body) -> Result<String, Refused> {
        let unauthorized = |e: ticket::TicketError| (401, e.why().into_owned());
        let now = self.clock.unix_time_s();
        let lifetime_max_s = self.cfg.ticket_lifetime_max_s;
        if let Some(t) = &body.ticket {
            let secret = match (ticket::is_seat(t), &self.cluster, &self.ticket_secret) {
                (true, Some(cluster), _) => Some(&cluster.secret),
                (true, None, _) => return Err(unauthorized(ticket::TicketError::NoSeats)),
                (false, _, secret) => secret.as_ref(),
            };
            if let Some(secret) = secret {
                let claims =
                    ticket::verify(secret, t, now, lifetime_max_s).map_err(unauthorized)?;
                if let (Some(bound), Some(room)) = (claims.room, &body.room) {
                    if bound != room && !ticket::is_seat(t) {
                        let room = bound.into();
                        return Err(unauthorized(ticket::TicketError::OtherRoom { room }));
                    }
                }
                return Ok(claims.player.to_string());
            }
        }
        if self.ticket_secret.is_some() {
            return Err(unauthorized(ticket::TicketError::Missing));
        }
        match &body.player {
            Some(p) if ticket::valid_id(p) => Ok(p.clone()),
            Some(_) => Err((400, "bad player id: 1 to 64 of A-Z a-z 0-9 _ -".into())),
            None => Ok(format!("guest-{}", crate::cluster::random_process_id())),
        }
    }

    /// Standalone: this process, if it has or may create the room.
    fn place_here(&self, request: &Request) -> Result<Placement, Refused> {
        let here = |room: &str, kind: &str| Placement {
            room: room.to_string(),
            kind: kind.to_string(),
            process: String::new(),
            url: self.cfg.public_url.clone().unwrap_or_default(),
        };
        let types = &self.rooms.types.types;
        if let Some(name) = &request.room {
            if let Some(r) = self.rooms.find(name) {
                let room = self.rooms.get(r);
                let kind = &types[room.kind].name;
                if request.kind_given && *kind != request.kind {
                    let asked = &request.kind;
                    return Err((409, format!("room {name} is of type {kind}, not {asked}")));
                }
                if room.max_players.is_some_and(|max| room.players() >= max) {
                    return Err((409, format!("room {name} is full")));
                }
                return Ok(here(name, kind));
            }
            return match self.cfg.room_creation {
                RoomCreation::Open => Ok(here(name, &request.kind)),
                _ => Err((404, format!("no room named {name}"))),
            };
        }
        // Any room of the type with a free seat, the fullest first (rooms fill before new ones open).
        let kind = types.iter().position(|t| t.name == request.kind);
        let fullest = self
            .rooms
            .iter()
            .map(|(_, room)| room)
            .filter(|room| Some(room.kind) == kind && !room.permanent)
            .filter(|room| room.max_players.map_or(true, |max| room.players() < max))
            .max_by_key(|room| room.players());
        match (fullest, self.cfg.room_creation) {
            (Some(room), _) => Ok(here(&room.name, &request.kind)),
            (None, RoomCreation::Open) => {
                let mut bytes = [0u8; 4];
                getrandom::fill(&mut bytes).expect("the operating system's random source");
                let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                let cut = &request.kind[..request.kind.len().min(55)];
                Ok(here(&format!("{cut}-{hex}"), &request.kind))
            }
            (None, _) => Err((
                404,
                format!("no room of type {} has a free seat", request.kind),
            )),
        }
    }

    /// 200 with where to connect: in a cluster with a seat ticket for `player`.
    fn answer_placed(
        &mut self,
        k: usize,
        player: &str,
        placement: Placement,
        kind_given: bool,
        cors: &str,
    ) {
        use std::fmt::Write;
        let Placement {
            room,
            kind,
            process,
            url,
        } = placement;
        let mut connect = format!("{url}/ws/{room}");
        let mut query = Vec::new();
        if kind_given {
            query.push(format!("type={kind}"));
        }
        let seat = self
            .cluster
            .as_ref()
            .filter(|_| !process.is_empty())
            .map(|cluster| {
                let expires = self.clock.unix_time_s() + SEAT_TICKET_LIFETIME.as_secs();
                (
                    ticket::issue_seat(&cluster.secret, player, &room, &process, expires),
                    expires,
                )
            });
        if let Some((seat, _)) = &seat {
            query.push(format!("ticket={seat}"));
        }
        if !query.is_empty() {
            let _ = write!(connect, "?{}", query.join("&"));
        }
        // Every value is of the room-name alphabet, a ticket, or a checked URL: nothing to escape.
        let quoted = |s: &str| match s.is_empty() {
            true => "null".to_string(),
            false => format!("\"{s}\""),
        };
        let (ticket, expires) = match &seat {
            Some((t, e)) => (quoted(t), e.to_string()),
            None => ("null".into(), "null".into()),
        };
        let body = format!(
            "{{\"room\":\"{room}\",\"type\":\"{kind}\",\"process\":{},\"connect\":\"{connect}\",\"ticket\":{ticket},\"expires_unix_s\":{expires}}}",
            quoted(&process)
        );
        self.metrics.matchmake_placed += 1;
        self.reply_http(k, CloseReason::HttpDone, |out| {
            http::write_response(out, 200, "application/json", body.as_bytes(), cors)
        });
    }

    /// An error answer: `status` and `{"error": why}`, with `Retry-After` on a 503.
    fn answer_error(&mut self, k: usize, status: u16, why: &str, cors: &str) {
        let body = format!("{{\"error\":{}}}", serde_json::Value::from(why));
        let mut headers = cors.to_string();
        if status == 503 {
            headers.push_str("Retry-After: 1\r\n");
        }
        self.metrics.matchmake_refused += 1;
        let reason = match status {
            503 => CloseReason::HttpDone,
            _ => CloseReason::HttpError,
        };
        self.reply_http(k, reason, |out| {
            http::write_response(out, status, "application/json", body.as_bytes(), &headers)
        });
    }
}
