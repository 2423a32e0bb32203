//! The server's HTTP routes: which paths exist and what each request asks for. `net::http` parses the
//! head; this module reads its path and query into a [`Route`] and refuses what no route takes, with the
//! status and the text the client reads.
//!
//! | path | route |
//! |---|---|
//! | `/ws`, `/ws/ROOM` | a WebSocket in the default room, or in room `ROOM` (join or create) |
//! | `--echo-path` | the conformance echo WebSocket |
//! | `/healthz`, `/metrics` | health check, Prometheus text |
//! | `/rooms`, `/rooms/ROOM` | the room list (paginated JSON), one room |
//! | `POST /matchmake` | where to connect for a room or a room type ([`super::matchmake`]) |
//! | `/dashboard`, `/dashboard/data` | the live dashboard and its JSON ([`super::dashboard`]; `--dashboard`) |
//! | `/`, `/game.js`, ... | the embedded web page ([`crate::assets`]) |

use crate::assets::{self, Asset};
use crate::net::http::{Refusal, Request, Upgrade};
use crate::sim::room::{
    valid_room_name, ROOM_OPTIONS_MAX, ROOM_OPTION_NAME_LEN_MAX, ROOM_OPTION_VALUE_LEN_MAX,
};

/// Rooms in one page of `GET /rooms`, at most and by default.
pub const ROOMS_PAGE_MAX: usize = 100;
/// Longest body of a `POST /matchmake`, in bytes (413 beyond).
pub const MATCHMAKE_BODY_MAX: usize = 1024;

const BAD_ROOM_NAME: Refusal<'static> =
    Refusal::new(400, "bad room name: 1 to 64 of A-Z a-z 0-9 _ -");

/// Where a complete request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A WebSocket that plays or watches in a room.
    Play(Entry),
    /// The conformance echo (`--echo-path`).
    Echo(Upgrade),
    Health,
    Metrics,
    /// `GET /rooms`: up to `limit` rooms named after `after`.
    Rooms {
        after: Option<String>,
        limit: usize,
    },
    /// `GET /rooms/NAME`.
    Room(String),
    /// `POST /matchmake` with a body of this many bytes.
    Matchmake(usize),
    /// `OPTIONS /matchmake`: a browser's CORS preflight.
    MatchmakePreflight,
    /// `GET /dashboard` (the page) or `GET /dashboard/data` (its JSON), with the token the request
    /// carries (`Authorization: Bearer`, else `?token=`), if any.
    Dashboard {
        data: bool,
        token: Option<String>,
    },
    Asset(&'static Asset),
}

/// What an upgrade to `/ws` or `/ws/ROOM` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub upgrade: Upgrade,
    /// The room it names (a valid name); `None`: the default room (`/ws`).
    pub room: Option<String>,
    /// `?type=`, for a room this upgrade creates.
    pub kind: Option<String>,
    /// The other query parameters, for a room this upgrade creates (at most [`ROOM_OPTIONS_MAX`]).
    pub options: Vec<(String, String)>,
    /// `?ticket=`, checked by the loop when tickets are required.
    pub ticket: Option<String>,
}

/// The route of `req`, or the refusal to answer it with.
pub fn route(req: &Request, echo_path: Option<&str>) -> Result<Route, Refusal<'static>> {
    let path = req.path();
    let room_path = |prefix: &str| path.strip_prefix(prefix).filter(|rest| !rest.is_empty());
    let known = path == "/ws"
        || path == "/healthz"
        || path == "/metrics"
        || path == "/rooms"
        || path == "/matchmake"
        || path == "/dashboard"
        || path == "/dashboard/data"
        || room_path("/ws/").is_some()
        || room_path("/rooms/").is_some()
        || echo_path == Some(path)
        || assets::find(path).is_some();
    if !known {
        return Err(Refusal::new(404, "not found"));
    }
    if path == "/matchmake" {
        return match req.method.as_str() {
            "POST" => match req.body_len.clone()? {
                None => Err(Refusal::new(411, "send the body with a Content-Length")),
                Some(n) if n > MATCHMAKE_BODY_MAX => Err(Refusal::new(
                    413,
                    "matchmaking request too large: at most 1024 bytes",
                )),
                Some(n) => Ok(Route::Matchmake(n)),
            },
            "OPTIONS" => Ok(Route::MatchmakePreflight),
            _ => Err(Refusal::new(405, "method not allowed: use POST")),
        };
    }
    if req.method != "GET" {
        return Err(Refusal::new(405, "method not allowed: use GET"));
    }
    if echo_path == Some(path) {
        return Ok(Route::Echo(req.upgrade.clone()?));
    }
    if path == "/ws" {
        return entry(req, None);
    }
    if let Some(name) = room_path("/ws/") {
        return entry(req, Some(room_name(name)?));
    }
    if let Some(name) = room_path("/rooms/") {
        return Ok(Route::Room(room_name(name)?));
    }
    if let Some(part) = path.strip_prefix("/dashboard") {
        let query = req.query().find(|(name, _)| *name == "token");
        let token = req.bearer.clone().or(query.map(|(_, v)| v.to_string()));
        let data = part == "/data";
        return Ok(Route::Dashboard { data, token });
    }
    Ok(match path {
        "/healthz" => Route::Health,
        "/metrics" => Route::Metrics,
        "/rooms" => rooms_page(req)?,
        _ => Route::Asset(assets::find(path).expect("checked above")),
    })
}

fn room_name(name: &str) -> Result<String, Refusal<'static>> {
    match valid_room_name(name) {
        true => Ok(name.to_string()),
        false => Err(BAD_ROOM_NAME),
    }
}

fn entry(req: &Request, room: Option<String>) -> Result<Route, Refusal<'static>> {
    let upgrade = req.upgrade.clone()?;
    let (mut kind, mut ticket, mut options) = (None, None, Vec::new());
    for (name, value) in req.query() {
        match name {
            "ticket" => ticket = Some(value.to_string()),
            "type" if valid_room_name(value) => kind = Some(value.to_string()),
            "type" => {
                return Err(Refusal::new(
                    400,
                    "bad room type: 1 to 64 of A-Z a-z 0-9 _ -",
                ))
            }
            _ if options.len() == ROOM_OPTIONS_MAX => {
                return Err(Refusal::new(400, "too many room options: at most 8"))
            }
            _ if name.len() > ROOM_OPTION_NAME_LEN_MAX
                || value.len() > ROOM_OPTION_VALUE_LEN_MAX =>
            {
                return Err(Refusal::new(
                    400,
                    "room option too long: names at most 32 bytes, values at most 64",
                ))
            }
            _ => options.push((name.to_string(), value.to_string())),
        }
    }
    Ok(Route::Play(Entry {
        upgrade,
        room,
        kind,
        options,
        ticket,
    }))
}

fn rooms_page(req: &Request) -> Result<Route, Refusal<'static>> {
    let (mut after, mut limit) = (None, ROOMS_PAGE_MAX);
    for (name, value) in req.query() {
        match name {
            "after" => after = Some(room_name(value)?),
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=ROOMS_PAGE_MAX).contains(n))
                    .ok_or(Refusal::new(400, "limit must be 1 to 100"))?
            }
            _ => {}
        }
    }
    Ok(Route::Rooms { after, limit })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::http;

    const UPGRADE: &str =
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                           Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

    fn r(target: &str, upgrade: bool) -> Result<Route, Refusal<'static>> {
        let head = format!(
            "GET {target} HTTP/1.1\r\nHost: x\r\n{}\r\n",
            if upgrade { UPGRADE } else { "" }
        );
        let req = http::parse(head.as_bytes(), 8192).unwrap().unwrap();
        route(&req, Some("/echo"))
    }

    fn play(target: &str) -> Entry {
        match r(target, true) {
            Ok(Route::Play(entry)) => entry,
            other => panic!("{target}: {other:?}"),
        }
    }

    #[test]
    fn paths_route_and_the_rest_is_refused_with_a_status() {
        assert_eq!(r("/healthz", false), Ok(Route::Health));
        assert_eq!(r("/metrics?x=1", false), Ok(Route::Metrics));
        assert_eq!(r("/nope", false).unwrap_err().status, 404);
        assert_eq!(r("/ws", false).unwrap_err().status, 426);
        assert_eq!(r("/ws/arena-1", false).unwrap_err().status, 426);
        assert!(matches!(r("/echo", true), Ok(Route::Echo(_))));
        assert!(matches!(r("/", false), Ok(Route::Asset(_))));
        let head = "POST /healthz HTTP/1.1\r\n\r\n";
        let req = http::parse(head.as_bytes(), 8192).unwrap().unwrap();
        assert_eq!(route(&req, None).unwrap_err().status, 405);
    }

    #[test]
    fn an_upgrade_names_its_room_type_options_and_ticket() {
        assert_eq!(play("/ws").room, None);
        let entry = play("/ws/duel_7?type=duel&map=canyon&ticket=v1.a.1.s&flag");
        assert_eq!(entry.room.as_deref(), Some("duel_7"));
        assert_eq!(entry.kind.as_deref(), Some("duel"));
        assert_eq!(entry.ticket.as_deref(), Some("v1.a.1.s"));
        let options = [("map", "canyon"), ("flag", "")].map(|(k, v)| (k.into(), v.into()));
        assert_eq!(entry.options, options);
        assert_eq!(play("/ws?ticket=t").ticket.as_deref(), Some("t"));
    }

    #[test]
    fn bad_names_and_options_are_400() {
        let long = "r".repeat(65);
        for target in [
            "/ws/a.b".to_string(),
            "/ws/%41".to_string(),
            format!("/ws/{long}"),
            "/ws/a/b".to_string(),
            "/ws/a?type=a.b".to_string(),
            format!("/ws/a?{}", "k=v&".repeat(9)),
            format!("/ws/a?k={}", "v".repeat(65)),
            "/rooms/a!".to_string(),
            "/rooms?limit=0".to_string(),
            "/rooms?limit=101".to_string(),
            "/rooms?after=a.b".to_string(),
        ] {
            assert_eq!(r(&target, true).unwrap_err().status, 400, "{target}");
        }
        assert!(r(&format!("/ws/{}", "r".repeat(64)), true).is_ok());
        assert_eq!(r("/ws/", true).unwrap_err().status, 404);
    }

    #[test]
    fn matchmaking_is_a_post_with_a_bounded_body() {
        let post = |head: &str| {
            let req = http::parse(head.as_bytes(), 8192).unwrap().unwrap();
            route(&req, None)
        };
        let ok = post("POST /matchmake HTTP/1.1\r\nContent-Length: 12\r\n\r\n");
        assert_eq!(ok, Ok(Route::Matchmake(12)));
        let refused = [
            ("POST /matchmake HTTP/1.1\r\n\r\n", 411),
            (
                "POST /matchmake HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                411,
            ),
            (
                "POST /matchmake HTTP/1.1\r\nContent-Length: 1025\r\n\r\n",
                413,
            ),
            (
                "POST /matchmake HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
                400,
            ),
            (
                "POST /matchmake HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                400,
            ),
            ("GET /matchmake HTTP/1.1\r\n\r\n", 405),
        ];
        for (head, status) in refused {
            assert_eq!(post(head).unwrap_err().status, status, "{head:?}");
        }
        let preflight = post("OPTIONS /matchmake HTTP/1.1\r\n\r\n");
        assert_eq!(preflight, Ok(Route::MatchmakePreflight));
    }

    #[test]
    fn the_dashboard_takes_its_token_from_the_header_or_the_query() {
        let dashboard = |head: &str| {
            let req = http::parse(head.as_bytes(), 8192).unwrap().unwrap();
            route(&req, None)
        };
        let route = |data, token: Option<&str>| {
            Ok(Route::Dashboard {
                data,
                token: token.map(Into::into),
            })
        };
        assert_eq!(r("/dashboard", false), route(false, None));
        assert_eq!(r("/dashboard?token=abc", false), route(false, Some("abc")));
        assert_eq!(
            r("/dashboard/data?x&token=t", false),
            route(true, Some("t"))
        );
        let bearer = "GET /dashboard/data?token=q HTTP/1.1\r\nAuthorization: Bearer  h \r\n\r\n";
        assert_eq!(dashboard(bearer), route(true, Some("h")));
        let basic = "GET /dashboard HTTP/1.1\r\nAuthorization: Basic h\r\n\r\n";
        assert_eq!(dashboard(basic), route(false, None));
        assert_eq!(r("/dashboard/", false).unwrap_err().status, 404);
        assert_eq!(r("/dashboard/x", false).unwrap_err().status, 404);
        let post = "POST /dashboard HTTP/1.1\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(dashboard(post).unwrap_err().status, 405);
    }

    #[test]
    fn the_room_list_pages() {
        assert_eq!(
            r("/rooms", false),
            Ok(Route::Rooms {
                after: None,
                limit: 100
            })
        );
        assert_eq!(
            r("/rooms?limit=2&after=b", false),
            Ok(Route::Rooms {
                after: Some("b".into()),
                limit: 2
            })
        );
        assert_eq!(
            r("/rooms/arena-1", false),
            Ok(Route::Room("arena-1".into()))
        );
    }
}
