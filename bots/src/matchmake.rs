//! Matchmaking before connecting (`--matchmake URL`): the server's `POST /matchmake` (docs/PROTOCOL.md,
//! "Matchmaking") says which process holds a room and gives a seat ticket for it; the bot then opens its
//! WebSocket at the `connect` URL of the answer.
//!
//! This module is the exchange's bytes and rules, no I/O and no clock: the request a bot writes
//! ([`Matchmaker::request`]), reading the answer off the socket as it comes ([`read_answer`]), what a
//! `200` says ([`Answer`]), and where `connect` points ([`Matchmaker::resolve_connect`]). The bot drives
//! the exchange on its own non-blocking socket in its worker's loop (see `bot.rs`), so a slow matchmaker
//! delays only the bots asking it, never the updates of the others.
//!
//! One exchange per connection attempt: `Connection: close`, the answer read to its `Content-Length`
//! (or the server's close), at most [`ANSWER_BYTES_MAX`] bytes.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Mutex;
use std::time::Duration;

use rustls::pki_types::ServerName;
use serde::Deserialize;
use url::Url;

use crate::tls;

/// Most bytes of an answer, head and body, a bot reads before giving up on it.
pub const ANSWER_BYTES_MAX: usize = 16 * 1024;
/// Most header lines of an answer.
const HEADERS_MAX: usize = 32;
/// The longest `Retry-After` a bot honours, whatever the server says.
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(60);

/// Where the bots ask: the `--matchmake` base URL, resolved once at start, and what they ask for.
#[derive(Debug, Clone)]
pub struct Matchmaker {
    /// The URL of the request, `http://host:port[/prefix]/matchmake` (or `https://`): what `connect`
    /// resolves against.
    pub url: Url,
    /// The address of its host, resolved once.
    pub addr: SocketAddr,
    /// `https://`: the name the matchmaker's certificate is checked for (the URL's host); `None`: plain.
    pub tls: Option<ServerName<'static>>,
    /// `--matchmake-type`: the room type asked for (with a room name: the type it is created with).
    pub room_type: Option<String>,
}

/// What one bot asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask<'a> {
    /// A room by name (join or create); `None`: any room of the matchmaker's `room_type`.
    pub room: Option<&'a str>,
    /// The player id the seat is for.
    pub player: &'a str,
}

/// The answer's `200` body (fields the bots use; others are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Answer {
    pub room: String,
    #[serde(default, rename = "type")]
    pub room_type: Option<String>,
    /// The process that holds the room (cluster mode); `null` from a standalone process.
    #[serde(default)]
    pub process: Option<String>,
    /// Where to open the WebSocket: a URL reference, resolved against the request's URL.
    pub connect: String,
    #[serde(default)]
    pub ticket: Option<String>,
    #[serde(default)]
    pub expires_unix_s: Option<u64>,
}

/// An HTTP answer, read whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAnswer {
    pub status: u16,
    /// `Retry-After` in seconds (503s carry one), capped at [`RETRY_AFTER_MAX`].
    pub retry_after: Option<Duration>,
    pub body: Vec<u8>,
}

impl HttpAnswer {
    /// The one line an error answer's `{"error": "..."}` gives, else the body as text (shortened).
    pub fn error_text(&self) -> String {
        #[derive(Deserialize)]
        struct Error {
            error: String,
        }
        match serde_json::from_slice::<Error>(&self.body) {
            Ok(e) => e.error,
            Err(_) => {
                let text = String::from_utf8_lossy(&self.body);
                text.chars().take(200).collect()
            }
        }
    }
}

/// Where a bot connects after an answer: the WebSocket URL (its ticket in it) and the address of its
/// host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub url: String,
    /// `host:port` of the URL: the process's name in the report when the answer names none.
    pub authority: String,
    /// `wss://`: the name the server's certificate is checked for (the URL's host); `None`: `ws://`.
    pub tls: Option<ServerName<'static>>,
}

impl Matchmaker {
    /// Parses `--matchmake` (an `http://host[:port][/prefix]` or `https://` base URL) and resolves its
    /// host.
    pub fn new(base: &str, room_type: Option<String>) -> Result<Matchmaker, String> {
        let parsed =
            Url::parse(base).map_err(|e| format!("--matchmake {base:?} is not a URL: {e}"))?;
        let https = match parsed.scheme() {
            "http" => false,
            "https" => true,
            _ => {
                return Err(format!(
                    "--matchmake {base:?} must start with http:// or https://"
                ))
            }
        };
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(format!(
                "--matchmake {base:?}: give the base URL only (no query, no fragment)"
            ));
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| format!("--matchmake {base:?} has no host"))?;
        let tls = match https {
            true => Some(tls::server_name(host).map_err(|e| format!("--matchmake: {e}"))?),
            false => None,
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = parsed.port_or_known_default().unwrap_or(80);
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("--matchmake: cannot resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("--matchmake: {host} resolves to no address"))?;
        let path = format!("{}/matchmake", parsed.path().trim_end_matches('/'));
        let mut url = parsed;
        url.set_path(&path);
        if let Some(t) = &room_type {
            if t.is_empty() {
                return Err("--matchmake-type must not be empty".to_string());
            }
        }
        Ok(Matchmaker {
            url,
            addr,
            tls,
            room_type,
        })
    }

    /// The JSON body of `ask`: `{"room": R}`, `{"type": T}` or both, and `"player"`.
    pub fn body(&self, ask: &Ask) -> String {
        let mut body = serde_json::Map::new();
        if let Some(room) = ask.room {
            body.insert("room".into(), room.into());
        }
        if let Some(t) = &self.room_type {
            body.insert("type".into(), t.as_str().into());
        }
        body.insert("player".into(), ask.player.into());
        serde_json::Value::Object(body).to_string()
    }

    /// The whole request for `ask`: `POST /matchmake` with a JSON body and `Connection: close`.
    pub fn request(&self, ask: &Ask) -> Vec<u8> {
        let body = self.body(ask);
        let host = match self.url.port() {
            Some(port) => format!("{}:{port}", self.url.host_str().unwrap_or_default()),
            None => self.url.host_str().unwrap_or_default().to_string(),
        };
        format!(
            "POST {} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.url.path(),
            body.len()
        )
        .into_bytes()
    }

    /// Where `connect` (a URL reference in an answer) points: resolved against the request's URL, as a
    /// browser's `new URL(connect, matchmakeUrl)`, then `http:` becomes `ws:` and `https:` `wss:`. A
    /// standalone process answers a path (so an `https://` matchmaker's answer is `wss://`), a cluster
    /// the owner's absolute `--public-url`.
    pub fn resolve_connect(&self, connect: &str) -> Result<Connect, String> {
        let mut url = self
            .url
            .join(connect)
            .map_err(|e| format!("connect {connect:?} is not a URL reference: {e}"))?;
        let (ws, tls) = match url.scheme() {
            "ws" => ("ws", false),
            "wss" => ("wss", true),
            "http" => ("ws", false),
            "https" => ("wss", true),
            other => return Err(format!("connect {connect:?} has scheme {other}:")),
        };
        url.set_scheme(ws)
            .map_err(|()| format!("connect {connect:?}: cannot make it {ws}://"))?;
        let host = url
            .host_str()
            .ok_or_else(|| format!("connect {connect:?} has no host"))?;
        let port = url.port_or_known_default().unwrap_or(80);
        let tls = match tls {
            true => Some(tls::server_name(host).map_err(|e| format!("connect {connect:?}: {e}"))?),
            false => None,
        };
        Ok(Connect {
            authority: format!("{host}:{port}"),
            url: url.into(),
            tls,
        })
    }
}

/// Resolves `authority` (`host:port`, as [`Connect::authority`]) to an address.
pub fn resolve_authority(authority: &str) -> Result<SocketAddr, String> {
    authority
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority} resolves to no address"))
}

/// Reads what came so far of an answer: `Ok(None)` while more is to come, the answer once it is whole.
/// `eof`: the server closed the connection (an answer without `Content-Length` ends there).
pub fn read_answer(bytes: &[u8], eof: bool) -> Result<Option<HttpAnswer>, String> {
    if bytes.len() > ANSWER_BYTES_MAX {
        return Err(format!("answer over {ANSWER_BYTES_MAX} bytes"));
    }
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if eof => {
            return Err(if bytes.is_empty() {
                "connection closed without an answer".to_string()
            } else {
                "connection closed in the middle of the answer's head".to_string()
            })
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("malformed answer: {e}")),
    };
    let status = response.code.unwrap_or(0);
    let mut length = None;
    let mut retry_after = None;
    for h in response.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            let n: usize = value
                .parse()
                .map_err(|_| format!("bad Content-Length {value:?}"))?;
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(format!(
                "Transfer-Encoding {value:?} is not supported: answer with a Content-Length"
            ));
        } else if h.name.eq_ignore_ascii_case("retry-after") {
            retry_after = value
                .parse::<u64>()
                .ok()
                .map(|s| Duration::from_secs(s).min(RETRY_AFTER_MAX));
        }
    }
    let body = &bytes[head_len..];
    let body = match length {
        Some(n) if head_len + n > ANSWER_BYTES_MAX => {
            return Err(format!("answer over {ANSWER_BYTES_MAX} bytes"))
        }
        Some(n) if body.len() >= n => &body[..n],
        Some(n) if eof => {
            return Err(format!(
                "connection closed after {} of {n} body bytes",
                body.len()
            ))
        }
        Some(_) => return Ok(None),
        None if eof => body,
        None => return Ok(None),
    };
    Ok(Some(HttpAnswer {
        status,
        retry_after,
        body: body.to_vec(),
    }))
}

/// What a `200` says, checked: JSON with at least `room` and `connect`.
pub fn parse_answer(body: &[u8]) -> Result<Answer, String> {
    serde_json::from_slice(body).map_err(|e| {
        let text: String = String::from_utf8_lossy(body).chars().take(200).collect();
        format!("the matchmaker's 200 is not an answer ({e}): {text}")
    })
}

/// The rooms the matchmaker placed bots in, when they asked for any room of a type (`--matchmake-type`
/// without `--rooms`): each gets a number, shared by every worker, so the per-room figures of all
/// workers add up by room. At most one entry per room a bot was placed in: a bot asks for the room it
/// was placed in from then on, so there are never more rooms than bots.
#[derive(Debug, Default)]
pub struct PlacedRooms {
    rooms: Mutex<(Vec<String>, HashMap<String, u32>)>,
}

impl PlacedRooms {
    /// The number of room `name`, given it if new.
    pub fn number(&self, name: &str) -> u32 {
        let mut guard = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        let (names, numbers) = &mut *guard;
        if let Some(&n) = numbers.get(name) {
            return n;
        }
        let n = names.len() as u32;
        names.push(name.to_string());
        numbers.insert(name.to_string(), n);
        n
    }

    /// Every room so far, by number.
    pub fn names(&self) -> Vec<String> {
        let guard = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        guard.0.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mm(base: &str) -> Matchmaker {
        Matchmaker::new(base, None).unwrap()
    }

    #[test]
    fn the_base_url_gains_matchmake_and_keeps_its_prefix() {
        let m = mm("http://127.0.0.1:9101");
        assert_eq!(m.url.as_str(), "http://127.0.0.1:9101/matchmake");
        assert_eq!(m.addr, "127.0.0.1:9101".parse().unwrap());
        assert_eq!(
            mm("http://127.0.0.1:9101/").url.as_str(),
            "http://127.0.0.1:9101/matchmake"
        );
        assert_eq!(
            mm("http://127.0.0.1:9101/game/").url.as_str(),
            "http://127.0.0.1:9101/game/matchmake"
        );
        assert_eq!(mm("http://127.0.0.1").addr.port(), 80);
        for bad in ["ws://127.0.0.1:1", "nonsense", "http://127.0.0.1:1/?x=1"] {
            assert!(Matchmaker::new(bad, None).is_err(), "{bad}");
        }
        let err = Matchmaker::new("ftp://127.0.0.1:1", None).unwrap_err();
        assert!(err.contains("--matchmake"), "{err}");
        assert_eq!(mm("http://127.0.0.1:9101").tls, None);
        let tls = mm("https://127.0.0.1:9101/game");
        assert_eq!(tls.url.as_str(), "https://127.0.0.1:9101/game/matchmake");
        assert!(matches!(tls.tls, Some(ServerName::IpAddress(_))));
        assert_eq!(mm("https://127.0.0.1").addr.port(), 443);
        assert!(Matchmaker::new("http://127.0.0.1:1", Some(String::new())).is_err());
    }

    #[test]
    fn the_request_is_a_post_with_a_json_body_of_its_length() {
        let m = mm("http://127.0.0.1:9101");
        let ask = Ask {
            room: Some("bots-3"),
            player: "bot-7",
        };
        let request = String::from_utf8(m.request(&ask)).unwrap();
        let (head, body) = request.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("POST /matchmake HTTP/1.1\r\nHost: 127.0.0.1:9101\r\n"),
            "{head}"
        );
        assert!(
            head.contains(&format!("\r\nContent-Length: {}", body.len())),
            "{head}"
        );
        assert!(head.contains("\r\nConnection: close"), "{head}");
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"room": "bots-3", "player": "bot-7"})
        );

        let typed = Matchmaker::new("http://127.0.0.1:9101", Some("arena".into())).unwrap();
        let any: serde_json::Value = serde_json::from_str(&typed.body(&Ask {
            room: None,
            player: "bot-0",
        }))
        .unwrap();
        assert_eq!(any, serde_json::json!({"type": "arena", "player": "bot-0"}));
        let both: serde_json::Value = serde_json::from_str(&typed.body(&ask)).unwrap();
        assert_eq!(
            both,
            serde_json::json!({"room": "bots-3", "type": "arena", "player": "bot-7"})
        );
    }

    #[test]
    fn connect_resolves_against_the_request_url_as_a_browser_would() {
        let m = mm("http://127.0.0.1:9101/game");
        // A standalone process answers a path: same host and port, ws://.
        let c = m.resolve_connect("/ws/arena-42?type=arena").unwrap();
        assert_eq!(c.url, "ws://127.0.0.1:9101/ws/arena-42?type=arena");
        assert_eq!(c.authority, "127.0.0.1:9101");
        // A cluster answers the owner's absolute URL, ticket included; it is taken as it is.
        let c = m
            .resolve_connect("ws://127.0.0.1:9102/ws/arena-42?type=arena&ticket=s1.a.b.c.1.x")
            .unwrap();
        assert_eq!(
            c.url,
            "ws://127.0.0.1:9102/ws/arena-42?type=arena&ticket=s1.a.b.c.1.x"
        );
        assert_eq!(c.authority, "127.0.0.1:9102");
        // A relative reference resolves against /game/matchmake; http:// becomes ws://.
        assert_eq!(
            m.resolve_connect("ws/r1").unwrap().url,
            "ws://127.0.0.1:9101/game/ws/r1"
        );
        assert_eq!(
            m.resolve_connect("http://10.0.0.5/ws/r1").unwrap(),
            Connect {
                url: "ws://10.0.0.5/ws/r1".into(),
                authority: "10.0.0.5:80".into(),
                tls: None,
            }
        );
        assert_eq!(
            m.resolve_connect("//127.0.0.1:9103/ws/r").unwrap().url,
            "ws://127.0.0.1:9103/ws/r"
        );
        // TLS: https:// becomes wss:// (port 443 unless given), checked for the URL's host.
        let c = m.resolve_connect("https://game.example/ws/r1").unwrap();
        assert_eq!(
            (c.url.as_str(), c.authority.as_str()),
            ("wss://game.example/ws/r1", "game.example:443")
        );
        assert_eq!(c.tls, Some(ServerName::try_from("game.example").unwrap()));
        let c = m.resolve_connect("wss://127.0.0.1:9104/ws/r").unwrap();
        assert_eq!(c.url, "wss://127.0.0.1:9104/ws/r");
        assert!(matches!(c.tls, Some(ServerName::IpAddress(_))));
        for bad in ["ftp://h/r", "http://[::1"] {
            assert!(m.resolve_connect(bad).is_err(), "{bad}");
        }
        // An https:// matchmaker's path answer is wss:// on the same host and port.
        let tls = mm("https://localhost:9105");
        let c = tls.resolve_connect("/ws/arena-1?type=arena").unwrap();
        assert_eq!(c.url, "wss://localhost:9105/ws/arena-1?type=arena");
        assert_eq!(c.tls, Some(ServerName::try_from("localhost").unwrap()));
    }

    const OK: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 7\r\n\r\n{\"a\":1}";

    #[test]
    fn an_answer_is_whole_at_its_content_length_or_at_the_close() {
        for cut in 0..OK.len() {
            assert_eq!(read_answer(&OK[..cut], false), Ok(None), "{cut} bytes");
            assert!(read_answer(&OK[..cut], true).is_err(), "{cut} bytes, eof");
        }
        let answer = read_answer(OK, false).unwrap().unwrap();
        assert_eq!(
            (answer.status, answer.body.as_slice()),
            (200, &b"{\"a\":1}"[..])
        );
        // Bytes past the length are not the body.
        let mut more = OK.to_vec();
        more.extend_from_slice(b"junk");
        assert_eq!(
            read_answer(&more, false).unwrap().unwrap().body,
            b"{\"a\":1}"
        );
        // Without a length the body ends with the connection.
        let no_length = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n\r\n{\"error\":\"no process can take a new room\"}";
        assert_eq!(read_answer(no_length, false), Ok(None));
        let answer = read_answer(no_length, true).unwrap().unwrap();
        assert_eq!(answer.status, 503);
        assert_eq!(answer.retry_after, Some(Duration::from_secs(1)));
        assert_eq!(answer.error_text(), "no process can take a new room");
    }

    #[test]
    fn malformed_chunked_and_oversized_answers_are_refused() {
        assert!(read_answer(b"SMTP ready\r\n\r\n", false).is_err());
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(read_answer(chunked, false)
            .unwrap_err()
            .contains("Transfer-Encoding"));
        let huge = b"HTTP/1.1 200 OK\r\nContent-Length: 999999\r\n\r\n";
        assert!(read_answer(huge, false).unwrap_err().contains("16384"));
        let long = vec![b'x'; ANSWER_BYTES_MAX + 1];
        assert!(read_answer(&long, false).is_err());
        let far = b"HTTP/1.1 503 x\r\nRetry-After: 99999\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(
            read_answer(far, false).unwrap().unwrap().retry_after,
            Some(RETRY_AFTER_MAX)
        );
    }

    #[test]
    fn placed_rooms_are_numbered_once_each() {
        let rooms = PlacedRooms::default();
        assert_eq!(rooms.number("arena-7"), 0);
        assert_eq!(rooms.number("arena-2"), 1);
        assert_eq!(rooms.number("arena-7"), 0);
        assert_eq!(rooms.names(), ["arena-7", "arena-2"]);
    }

    #[test]
    fn a_200_must_name_the_room_and_where_to_connect() {
        let a = parse_answer(
            br#"{"room":"arena-42","type":"arena","process":"p1","connect":"ws://127.0.0.1:9101/ws/arena-42?type=arena&ticket=s1.x","ticket":"s1.x","expires_unix_s":1767225600}"#,
        )
        .unwrap();
        assert_eq!(a.room, "arena-42");
        assert_eq!(a.process.as_deref(), Some("p1"));
        assert_eq!(a.expires_unix_s, Some(1_767_225_600));
        let standalone = parse_answer(
            br#"{"room":"r","type":"arena","process":null,"connect":"/ws/r?type=arena","ticket":null,"expires_unix_s":null}"#,
        )
        .unwrap();
        assert_eq!((standalone.process, standalone.ticket), (None, None));
        let err = parse_answer(br#"{"room":"r"}"#).unwrap_err();
        assert!(err.contains("connect"), "{err}");
        assert!(parse_answer(b"<html>").is_err());
    }
}
