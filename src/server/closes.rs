//! Every close the server starts, as one value: the close code and the reason the client reads
//! (`docs/PROTOCOL.md`, "Close codes") and the label it is counted under in
//! `tickcast_connections_closed_total`. The reason texts are written here and nowhere else.

use std::borrow::Cow;

use crate::config::Config;
use crate::metrics::CloseReason;
use crate::proto::{self, close};
use crate::ticket::TicketError;

/// Why the server closes a WebSocket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Close {
    // -- the client broke the protocol
    /// A text message: the protocol is binary.
    TextFrame,
    /// A binary message that does not decode; the decoder's words.
    Malformed(String),
    /// `Hello` or `Watch` of another protocol version.
    VersionMismatch(u16),
    /// A frame or message over `--max-message-bytes`; tungstenite's words.
    TooBig(String),
    InvalidUtf8,
    /// A WebSocket framing error; tungstenite's words.
    Framing(String),
    HelloTwice,
    WatchAfterRole,
    InputBeforeHello,
    /// `Send` before `Joined` (or from a spectator).
    SendBeforeHello,
    // -- the client costs more than its share
    /// More than `--fragments-per-message-max` frames in one message.
    TooManyFragments,
    /// Frames past `--messages-per-s` for longer than `--message-drop-limit` allows.
    RateLimited,
    /// A frame not finished within `--frame-timeout-ms`.
    FrameTimeout,
    /// No `Hello` or `Watch` within `--handshake-timeout-ms`.
    NoHello,
    /// Nothing heard for `--idle-timeout-ms`.
    Idle,
    // -- tickets
    /// Tickets required, and none came within `--handshake-timeout-ms`.
    NoTicket,
    Ticket(TicketError),
    // -- slow consumers
    /// No update could be queued for `--lag-limit-ms`.
    Lagging,
    /// The first update was not taken whole within `--first-update-lag-limit-ms`.
    FirstUpdateLagging,
    /// More than `--send-limit-bytes` queued.
    SendLimit,
    // -- the server's doing
    WorldFull,
    /// The player was resumed on a newer connection.
    Replaced,
    Shutdown,
    // -- rooms
    /// A `Hello` past the room type's player cap.
    RoomFullOfPlayers(usize),
    /// A `Watch` past the room type's spectator cap.
    RoomFullOfSpectators(usize),
    /// The game ended the room; its reason.
    RoomEnded(String),
    /// The game kicked the player; its reason.
    Kicked(String),
    /// In a cluster, the directory says another process holds this room (two created it at once, or
    /// after a partition): this copy goes.
    RoomElsewhere(String),
}

impl Close {
    pub fn code(&self) -> u16 {
        match self {
            Close::TextFrame => close::UNSUPPORTED_DATA,
            Close::Malformed(_) | Close::InvalidUtf8 => close::INVALID_PAYLOAD,
            Close::VersionMismatch(_) => close::VERSION_MISMATCH,
            Close::TooBig(_) => close::MESSAGE_TOO_BIG,
            Close::Framing(_) => close::PROTOCOL_ERROR,
            Close::HelloTwice
            | Close::WatchAfterRole
            | Close::InputBeforeHello
            | Close::SendBeforeHello
            | Close::TooManyFragments
            | Close::RateLimited
            | Close::FrameTimeout
            | Close::NoHello => close::POLICY_VIOLATION,
            Close::Idle => close::IDLE_TIMEOUT,
            Close::NoTicket | Close::Ticket(_) => close::UNAUTHORIZED,
            Close::Lagging | Close::FirstUpdateLagging => close::LAGGING,
            Close::SendLimit => close::SEND_LIMIT,
            Close::WorldFull => close::TRY_AGAIN_LATER,
            Close::Replaced => close::REPLACED,
            Close::Shutdown => close::GOING_AWAY,
            Close::RoomFullOfPlayers(_) | Close::RoomFullOfSpectators(_) => close::ROOM_FULL,
            Close::RoomEnded(_) => close::ROOM_ENDED,
            Close::Kicked(_) => close::KICKED,
            Close::RoomElsewhere(_) => close::ROOM_ELSEWHERE,
        }
    }

    /// What the client reads; the limits it names are `cfg`'s.
    pub fn reason(&self, cfg: &Config) -> Cow<'static, str> {
        let text: Cow<'static, str> = match self {
            Close::TextFrame => "text frames are not supported: send binary".into(),
            Close::Malformed(e) => format!("malformed message: {e}").into(),
            Close::VersionMismatch(v) => format!(
                "protocol version mismatch: client speaks {v}, server speaks {}",
                proto::PROTOCOL_VERSION
            )
            .into(),
            Close::TooBig(e) => format!("message too big: {e}").into(),
            Close::InvalidUtf8 => "invalid UTF-8".into(),
            Close::Framing(e) => format!("WebSocket protocol error: {e}").into(),
            Close::HelloTwice => "Hello sent twice".into(),
            Close::WatchAfterRole => "Watch after Hello or Watch".into(),
            Close::InputBeforeHello => "Input before Hello".into(),
            Close::SendBeforeHello => "Send before Hello".into(),
            Close::TooManyFragments => format!(
                "message in more than {} frames",
                cfg.fragments_per_message_max
            )
            .into(),
            Close::RateLimited => format!(
                "message rate limit exceeded: {} frames per second allowed",
                cfg.messages_per_s
            )
            .into(),
            Close::FrameTimeout => {
                format!("frame not completed within {} ms", cfg.frame_timeout_ms).into()
            }
            Close::NoHello => {
                format!("no Hello or Watch within {} ms", cfg.handshake_timeout_ms).into()
            }
            Close::Idle => format!("idle for {} ms", cfg.idle_timeout_ms).into(),
            Close::NoTicket => format!("no ticket within {} ms", cfg.handshake_timeout_ms).into(),
            Close::Ticket(e) => e.why().into_owned().into(),
            Close::Lagging => format!(
                "too slow: no update could be sent for {} ms",
                cfg.lag_limit_ms
            )
            .into(),
            Close::FirstUpdateLagging => format!(
                "too slow: the first update was not taken within {} ms",
                cfg.first_update_lag_limit_ms
            )
            .into(),
            Close::SendLimit => format!("send buffer passed {} bytes", cfg.send_limit_bytes).into(),
            Close::WorldFull => "the world is full".into(),
            Close::Replaced => "player resumed on another connection".into(),
            Close::Shutdown => "server shutting down".into(),
            Close::RoomFullOfPlayers(max) => format!("room is full: {max} players").into(),
            Close::RoomFullOfSpectators(max) => format!("room is full: {max} spectators").into(),
            Close::RoomEnded(why) => format!("room ended: {why}").into(),
            Close::Kicked(why) => format!("kicked: {why}").into(),
            Close::RoomElsewhere(room) => {
                format!("room {room} is hosted by another process: ask the matchmaker again").into()
            }
        };
        text
    }

    /// The label it is counted under.
    pub fn counted_as(&self) -> CloseReason {
        match self {
            Close::TextFrame
            | Close::InvalidUtf8
            | Close::Framing(_)
            | Close::HelloTwice
            | Close::WatchAfterRole
            | Close::InputBeforeHello
            | Close::SendBeforeHello
            | Close::TooManyFragments => CloseReason::ProtocolError,
            Close::Malformed(_) => CloseReason::MalformedMessage,
            Close::VersionMismatch(_) => CloseReason::VersionMismatch,
            Close::TooBig(_) => CloseReason::MessageTooBig,
            Close::RateLimited => CloseReason::RateLimited,
            Close::FrameTimeout => CloseReason::FrameTimeout,
            Close::NoHello => CloseReason::HandshakeTimeout,
            Close::Idle => CloseReason::IdleTimeout,
            Close::NoTicket | Close::Ticket(_) => CloseReason::Unauthorized,
            Close::Lagging => CloseReason::Lagging,
            Close::FirstUpdateLagging => CloseReason::FirstUpdateLagging,
            Close::SendLimit => CloseReason::SendLimit,
            Close::WorldFull => CloseReason::WorldFull,
            Close::Replaced => CloseReason::Replaced,
            Close::Shutdown => CloseReason::Shutdown,
            Close::RoomFullOfPlayers(_) | Close::RoomFullOfSpectators(_) => CloseReason::RoomFull,
            Close::RoomEnded(_) => CloseReason::RoomEnded,
            Close::Kicked(_) => CloseReason::Kicked,
            Close::RoomElsewhere(_) => CloseReason::RoomElsewhere,
        }
    }

    /// A slow consumer's close: what it has queued is stale, so the close frame may jump the queue.
    pub fn drops_queued_updates(&self) -> bool {
        matches!(
            self,
            Close::Lagging | Close::FirstUpdateLagging | Close::SendLimit
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every close with a fixed text, as docs/PROTOCOL.md's table must show it (with the defaults).
    fn every_fixed_close() -> Vec<Close> {
        vec![
            Close::TextFrame,
            Close::VersionMismatch(2),
            Close::InvalidUtf8,
            Close::HelloTwice,
            Close::WatchAfterRole,
            Close::InputBeforeHello,
            Close::SendBeforeHello,
            Close::TooManyFragments,
            Close::RateLimited,
            Close::FrameTimeout,
            Close::NoHello,
            Close::Idle,
            Close::NoTicket,
            Close::Ticket(TicketError::Missing),
            Close::Ticket(TicketError::Expired),
            Close::Lagging,
            Close::FirstUpdateLagging,
            Close::SendLimit,
            Close::WorldFull,
            Close::Replaced,
            Close::Shutdown,
            Close::RoomFullOfPlayers(16),
            Close::RoomFullOfSpectators(64),
            Close::RoomEnded("match over".into()),
            Close::Kicked("idle too long".into()),
            Close::RoomElsewhere("arena-1".into()),
            Close::Ticket(TicketError::OtherRoom {
                room: "arena-1".into(),
            }),
        ]
    }

    #[test]
    fn every_reason_fits_a_close_frame_and_is_in_the_protocol_document_with_its_code() {
        let cfg = Config::default();
        let doc = include_str!("../../docs/PROTOCOL.md");
        for c in every_fixed_close() {
            let reason = c.reason(&cfg);
            assert!(reason.len() <= 123, "{c:?}: {reason}");
            let row = doc
                .lines()
                .find(|l| l.starts_with(&format!("| {} |", c.code())))
                .unwrap_or_else(|| panic!("no row for code {} ({c:?})", c.code()));
            assert!(
                row.contains(&format!("`{reason}`")),
                "the row of {} does not show `{reason}`: {row}",
                c.code()
            );
        }
    }
}
