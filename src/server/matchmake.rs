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
use crate::cluster::{Ask, MatchError, Placement, SEAT_EXPIRY_AHEAD_MAX_S, SEAT_TICKET_LIFETIME};
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
    /// Whether the matchmaker may place a room that exists nowhere (`--room-creation`): `open` yes,
    /// `off` no, `ticket` only a room the request's backend ticket is bound to, or a new room of a type
    /// the matchmaker names itself.
    may_create: bool,
}

/// Who asks, as its ticket says.
struct Asker {
    player: String,
    /// The room its ticket is bound to (a `v2` backend ticket).
    bound: Option<String>,
}

type Refused = (u16, String);

impl<G: Game, C: Clock> Server<G, C> {
    /// Answers (or, in a cluster, hands on) connection `k`'s `POST /matchmake`, whose body of `len` bytes
    /// has arrived behind the head.
    pub(super) fn matchmake(&mut self, k: usize, head: &http::Request, len: usize) {
        let cors = self.cors(head.origin.as_deref());
        if !self.origin_allowed(head.origin.as_deref()) {
            return self.answer_error(k, 403, "origin not allowed", &cors);
        }
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
            may_create: request.may_create,
            player: request.player.clone(),
            asked_at: self.now,
        };
        if !cluster.ask(ask) {
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
                    MatchError::NotFound(_) => 404,
                    _ => 503,
                };
                let why = match e {
                    MatchError::Unavailable => "matchmaking unavailable: redis unreachable".into(),
                    MatchError::NoCapacity => "no process can take a new room".into(),
                    MatchError::Draining(room) => format!("room {room} is on a draining process"),
                    MatchError::Full(room) => format!("room {room} is full"),
                    MatchError::NotFound(what) => what,
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
        let asker = self.player_of(&body)?;
        // A ticket bound to a room is for that room alone, whatever the request names.
        let room = match (&asker.bound, body.room) {
            (Some(bound), Some(room)) if *bound != room => {
                let room = bound.as_str().into();
                let why = ticket::TicketError::OtherRoom { room }.why().into_owned();
                return Err((401, why));
            }
            (Some(bound), _) => Some(bound.clone()),
            (None, room) => room,
        };
        let may_create = match self.cfg.room_creation {
            RoomCreation::Open => true,
            RoomCreation::Off => false,
            RoomCreation::Ticket => asker.bound.is_some() || room.is_none(),
        };
        Ok(Request {
            room,
            kind_given: body.kind.is_some(),
            kind,
            player: asker.player,
            may_create,
        })
    }

    /// Who asks. Where the server requires the backend's tickets, the player of the request's ticket (a
    /// `v1` or a `v2`, whose room it keeps); elsewhere the `player` the request names (unauthenticated:
    /// anyone may name any player there), the player of a seat ticket it brings for the room it asks, or a
    /// fresh guest id.
    fn player_of(&self, body: &Body) -> Result<Asker, Refused> {
        let unauthorized = |e: ticket::TicketError| (401, e.why().into_owned());
        let now = self.clock.unix_time_s();
        if let Some(secret) = &self.ticket_secret {
            let t = body
                .ticket
                .as_deref()
                .ok_or(unauthorized(ticket::TicketError::Missing))?;
            if ticket::is_seat(t) {
                // A seat is no backend ticket: it would renew a player's identity forever.
                return Err(unauthorized(ticket::TicketError::Malformed));
            }
            let lifetime_max_s = self.cfg.ticket_lifetime_max_s;
            let claims = ticket::verify(secret, t, now, lifetime_max_s).map_err(unauthorized)?;
            return Ok(Asker {
                player: claims.player.to_string(),
                bound: claims.room.map(str::to_string),
            });
        }
        if let Some(t) = body.ticket.as_deref().filter(|t| ticket::is_seat(t)) {
            let Some(cluster) = &self.cluster else {
                return Err(unauthorized(ticket::TicketError::NoSeats));
            };
            let lifetime_max_s = SEAT_EXPIRY_AHEAD_MAX_S;
            let claims =
                ticket::verify(&cluster.secret, t, now, lifetime_max_s).map_err(unauthorized)?;
            let seat_room = claims.room.unwrap_or("");
            if body.room.as_deref() != Some(seat_room) {
                let room = seat_room.into();
                return Err(unauthorized(ticket::TicketError::OtherRoom { room }));
            }
            return Ok(Asker {
                player: claims.player.to_string(),
                bound: None,
            });
        }
        let player = match &body.player {
            Some(p) if ticket::valid_id(p) => p.clone(),
            Some(_) => return Err((400, "bad player id: 1 to 64 of A-Z a-z 0-9 _ -".into())),
            None => format!("guest-{}", crate::cluster::random_process_id()),
        };
        Ok(Asker {
            player,
            bound: None,
        })
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
            return match request.may_create {
                true => Ok(here(name, &request.kind)),
                false => Err((404, format!("no room named {name}"))),
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
        match (fullest, request.may_create) {
            (Some(room), _) => Ok(here(&room.name, &request.kind)),
            (None, true) if self.cfg.room_creation == RoomCreation::Open => Ok(here(
                &crate::cluster::new_room_name(&request.kind),
                &request.kind,
            )),
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
