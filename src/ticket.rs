//! Authentication tickets: short-lived, HMAC-signed by the game's own backend with a secret it shares with
//! tickcast, presented as `?ticket=` on the WebSocket upgrade or in the first message (`Hello`, `Watch`).
//!
//! Format (all ASCII): `v1.<player>.<expires>.<signature>`, where `player` is the backend's player id
//! (1 to 64 characters of `A-Z a-z 0-9 _ -`), `expires` the Unix time in seconds after which the ticket is
//! refused, and `signature` the unpadded base64url of HMAC-SHA256(secret, `v1.<player>.<expires>`).
//! A ticket bound to one room is `v2.<player>.<room>.<expires>.<signature>`, signed over
//! `v2.<player>.<room>.<expires>` (a room name has the same alphabet as a player id): it admits only to that
//! room. `docs/OPERATIONS.md` has an issuing example. A ticket is never logged or counted by value.
//!
//! A **seat ticket** is what `POST /matchmake` answers in a cluster (docs/CLUSTER.md):
//! `s1.<player>.<room>.<process>.<expires>.<signature>`, signed over `s1.<player>.<room>.<process>.<expires>`
//! with the cluster's shared secret (`--cluster-secret-file`), not the game backend's. It admits `player` to
//! `room` on process `process` only (a process id has the alphabet of a player id), until `expires`.
//!
//! A ticket whose `expires` is further ahead than `--ticket-lifetime-max-s` is refused too: the server does
//! not remember used tickets, so a ticket can be replayed until it expires, and that bound caps how long a
//! leaked one is worth anything, whatever the issuer wrote into it.

use std::borrow::Cow;

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Longest ticket accepted, in bytes; longer is refused before any work.
pub const TICKET_LEN_MAX: usize = 256;
const PLAYER_LEN_MAX: usize = 64;

/// Why a ticket was refused; the text goes into the 401 body or the 4004 close reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketError {
    Missing,
    Malformed,
    BadSignature,
    Expired,
    /// Signed and unexpired, but it expires more than `max_s` seconds from now (`--ticket-lifetime-max-s`).
    TooFarAhead {
        max_s: u64,
    },
    /// Valid, but a resume with it names a session another account's ticket created.
    OtherAccount,
    /// Valid, but bound to another room than the one it was presented in.
    OtherRoom {
        room: Box<str>,
    },
    /// A valid seat ticket for another process of the cluster.
    OtherProcess {
        process: Box<str>,
    },
    /// A seat ticket presented to a process that is in no cluster (no `--cluster-secret-file`).
    NoSeats,
}

/// What a valid ticket says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claims<'t> {
    /// The game backend's player id: the connection's account.
    pub player: &'t str,
    /// The room it admits to (a `v2` or seat ticket); `None`: any room.
    pub room: Option<&'t str>,
    /// The process it admits to (a seat ticket); `None`: any process.
    pub process: Option<&'t str>,
}

impl TicketError {
    pub fn why(&self) -> Cow<'static, str> {
        match self {
            TicketError::Missing => {
                "a ticket is required: /ws?ticket=... or in Hello or Watch".into()
            }
            TicketError::Malformed => "malformed ticket".into(),
            TicketError::BadSignature => "invalid ticket signature".into(),
            TicketError::Expired => "ticket expired".into(),
            TicketError::TooFarAhead { max_s } => {
                format!("ticket expires too far ahead: at most {max_s} s").into()
            }
            TicketError::OtherAccount => "ticket is for another account than this session".into(),
            TicketError::OtherRoom { room } => format!("ticket is for room {room}").into(),
            TicketError::OtherProcess { process } => {
                format!("seat ticket is for process {process}: ask the matchmaker again").into()
            }
            TicketError::NoSeats => "seat tickets are taken only in a cluster".into(),
        }
    }
}

/// Signs a ticket for `player` valid until `expires_unix_s`. What a game backend does, in Rust.
pub fn issue(secret: &[u8], player: &str, expires_unix_s: u64) -> String {
    let payload = format!("v1.{player}.{expires_unix_s}");
    let signature = data_encoding::BASE64URL_NOPAD.encode(&sign(secret, payload.as_bytes()));
    format!("{payload}.{signature}")
}

/// Signs a ticket for `player` that admits only to `room`, valid until `expires_unix_s`.
pub fn issue_for_room(secret: &[u8], player: &str, room: &str, expires_unix_s: u64) -> String {
    let payload = format!("v2.{player}.{room}.{expires_unix_s}");
    let signature = data_encoding::BASE64URL_NOPAD.encode(&sign(secret, payload.as_bytes()));
    format!("{payload}.{signature}")
}

/// Signs a seat ticket (what the matchmaker answers): `player` in `room` on process `process` until
/// `expires_unix_s`, with the cluster's secret.
pub fn issue_seat(
    cluster_secret: &[u8],
    player: &str,
    room: &str,
    process: &str,
    expires_unix_s: u64,
) -> String {
    let payload = format!("s1.{player}.{room}.{process}.{expires_unix_s}");
    let signature =
        data_encoding::BASE64URL_NOPAD.encode(&sign(cluster_secret, payload.as_bytes()));
    format!("{payload}.{signature}")
}

/// Whether `ticket` says it is a seat ticket (checked with the cluster's secret, not the backend's).
pub fn is_seat(ticket: &str) -> bool {
    ticket.starts_with("s1.")
}

/// Whether `id` has the alphabet and length of a player id (also of a room name and a process id).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= PLAYER_LEN_MAX
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn sign(secret: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(payload);
    mac.finalize().into_bytes().to_vec()
}

/// Checks `ticket` against `secret` at `now_unix_s`, refusing one that expires more than `lifetime_max_s`
/// seconds after it; what it says on success. The signature is checked first, so a forgery learns nothing
/// about the time rules.
pub fn verify<'t>(
    secret: &[u8],
    ticket: &'t str,
    now_unix_s: u64,
    lifetime_max_s: u64,
) -> Result<Claims<'t>, TicketError> {
    if ticket.len() > TICKET_LEN_MAX {
        return Err(TicketError::Malformed);
    }
    let (payload, signature) = ticket.rsplit_once('.').ok_or(TicketError::Malformed)?;
    let parts: Vec<&str> = payload.splitn(6, '.').collect();
    let (player, room, process, expires) = match parts[..] {
        ["v1", player, expires] => (player, None, None, expires),
        ["v2", player, room, expires] => (player, Some(room), None, expires),
        ["s1", player, room, process, expires] => (player, Some(room), Some(process), expires),
        _ => return Err(TicketError::Malformed),
    };
    let player_ok =
        valid_id(player) && room.map_or(true, valid_id) && process.map_or(true, valid_id);
    let expires: u64 = expires.parse().map_err(|_| TicketError::Malformed)?;
    let signature = data_encoding::BASE64URL_NOPAD
        .decode(signature.as_bytes())
        .map_err(|_| TicketError::Malformed)?;
    if !player_ok {
        return Err(TicketError::Malformed);
    }
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(payload.as_bytes());
    // Constant-time comparison.
    mac.verify_slice(&signature)
        .map_err(|_| TicketError::BadSignature)?;
    if now_unix_s > expires {
        return Err(TicketError::Expired);
    }
    if expires > now_unix_s.saturating_add(lifetime_max_s) {
        return Err(TicketError::TooFarAhead {
            max_s: lifetime_max_s,
        });
    }
    Ok(Claims {
        player,
        room,
        process,
    })
}

/// The value of `ticket` in a request target's query string, percent-decoding not needed (the format is
/// URL-safe).
pub fn from_query(target: &str) -> Option<&str> {
    let (_, query) = target.split_once('?')?;
    query.split('&').find_map(|kv| kv.strip_prefix("ticket="))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"correct horse battery staple";
    /// A lifetime bound no test ticket here comes near, where the bound is not what is tested.
    const LONG: u64 = u64::MAX;

    fn any_room(player: &str) -> Claims<'_> {
        Claims {
            player,
            room: None,
            process: None,
        }
    }

    #[test]
    fn a_seat_ticket_names_room_and_process_and_its_signature_covers_both() {
        let t = issue_seat(SECRET, "ann", "arena-1", "p-7", 1_000);
        assert!(
            is_seat(&t) && t.starts_with("s1.ann.arena-1.p-7.1000."),
            "{t}"
        );
        assert_eq!(
            verify(SECRET, &t, 0, LONG),
            Ok(Claims {
                player: "ann",
                room: Some("arena-1"),
                process: Some("p-7")
            })
        );
        for forged in [
            t.replace(".p-7.", ".p-8."),
            t.replace(".arena-1.", ".arena-2."),
        ] {
            assert_eq!(
                verify(SECRET, &forged, 0, LONG),
                Err(TicketError::BadSignature)
            );
        }
        assert_eq!(verify(SECRET, &t, 1_001, LONG), Err(TicketError::Expired));
        // The longest ids still fit the length bound.
        let long = "x".repeat(64);
        let t = issue_seat(SECRET, &long, &long, &long, 9_999_999_999);
        assert!(t.len() <= TICKET_LEN_MAX, "{}", t.len());
        assert!(verify(SECRET, &t, 0, LONG).is_ok());
    }

    #[test]
    fn a_room_bound_ticket_names_its_room_and_its_signature_covers_it() {
        let t = issue_for_room(SECRET, "ann", "arena-1", 1_000);
        assert!(t.starts_with("v2.ann.arena-1.1000."), "{t}");
        let claims = verify(SECRET, &t, 0, LONG);
        assert_eq!(
            claims,
            Ok(Claims {
                player: "ann",
                room: Some("arena-1"),
                process: None
            })
        );
        let moved = t.replace(".arena-1.", ".arena-2.");
        assert_eq!(
            verify(SECRET, &moved, 0, LONG),
            Err(TicketError::BadSignature)
        );
        let unbound = t.replace("v2.ann.arena-1.", "v1.ann.");
        assert_eq!(
            verify(SECRET, &unbound, 0, LONG),
            Err(TicketError::BadSignature)
        );
    }

    #[test]
    fn issued_tickets_verify_until_they_expire() {
        let t = issue(SECRET, "player_42", 1_000);
        assert_eq!(verify(SECRET, &t, 999, LONG), Ok(any_room("player_42")));
        assert_eq!(verify(SECRET, &t, 1_000, LONG), Ok(any_room("player_42")));
        assert_eq!(verify(SECRET, &t, 1_001, LONG), Err(TicketError::Expired));
    }

    #[test]
    fn tampering_and_junk_are_refused() {
        let t = issue(SECRET, "p1", 1_000);
        assert_eq!(
            verify(b"another secret", &t, 0, LONG),
            Err(TicketError::BadSignature)
        );
        let forged = t.replace("v1.p1.", "v1.p2.");
        assert_eq!(
            verify(SECRET, &forged, 0, LONG),
            Err(TicketError::BadSignature)
        );
        let extended = t.replace(".1000.", ".9999.");
        assert_eq!(
            verify(SECRET, &extended, 0, LONG),
            Err(TicketError::BadSignature)
        );
        for junk in [
            "",
            "v1",
            "v1.p1.1000",
            "v3.p1.1000.AAAA",
            "v2.p1.1000.AAAA",
            "v2.p1.r 1.1000.AAAA",
            "v1.p 1.1000.AAAA",
            "v1.p1.soon.AAAA",
            "v1.p1.1.!!",
        ] {
            assert_eq!(
                verify(SECRET, junk, 0, LONG),
                Err(TicketError::Malformed),
                "{junk:?}"
            );
        }
        assert_eq!(
            verify(SECRET, &"a".repeat(300), 0, LONG),
            Err(TicketError::Malformed)
        );
    }

    #[test]
    fn a_ticket_expiring_beyond_the_lifetime_bound_is_refused_with_the_bound() {
        let now = 1_000_000;
        let at_bound = issue(SECRET, "p1", now + 300);
        assert_eq!(verify(SECRET, &at_bound, now, 300), Ok(any_room("p1")));
        let beyond = issue(SECRET, "p1", now + 301);
        let refused = verify(SECRET, &beyond, now, 300);
        assert_eq!(refused, Err(TicketError::TooFarAhead { max_s: 300 }));
        assert_eq!(
            refused.unwrap_err().why(),
            "ticket expires too far ahead: at most 300 s"
        );
        // The attacker's ticket: expires in 2^63 s. No overflow, refused; a forged one says forged.
        let forever = issue(SECRET, "p1", u64::MAX);
        assert_eq!(
            verify(SECRET, &forever, now, 300),
            Err(TicketError::TooFarAhead { max_s: 300 })
        );
        assert_eq!(
            verify(b"another secret", &forever, now, 300),
            Err(TicketError::BadSignature)
        );
        // Ten seconds later the same ticket is inside the bound.
        assert_eq!(verify(SECRET, &beyond, now + 10, 300), Ok(any_room("p1")));
    }

    #[test]
    fn known_answer() {
        // HMAC-SHA256(key = "secret", "v1.alice.1700000000"), computed independently with Python's hmac.
        let t = issue(b"secret", "alice", 1_700_000_000);
        assert_eq!(
            t,
            "v1.alice.1700000000.ckc9u1tmj9f-HjT20IZCzvmctXteMZg8lp6iJKtt2Us"
        );
        assert_eq!(from_query("/ws?x=1&ticket=abc.def&y=2"), Some("abc.def"));
        assert_eq!(from_query("/ws"), None);
    }
}
