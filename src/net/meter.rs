//! Counts the WebSocket frames in a client's byte stream as it is handed to tungstenite, so the loop can
//! bound what one connection costs: frames per turn, fragments per message, every frame (control frames
//! too) charged to the rate limit, and a deadline on a frame or message that was started but not finished.
//!
//! tungstenite parses the same bytes and stays the authority on what they mean; the meter only reads the
//! frame headers (RFC 6455 section 5.2: two bytes, an extended length of 2 or 8 bytes, a 4-byte mask) and
//! skips payloads, so it costs a few comparisons per frame. Both walk the same layout, so they stay in
//! step; on bytes tungstenite rejects the connection is closed anyway, whatever the meter counted.

use std::time::Instant;

/// A frame header is at most 2 + 8 + 4 bytes.
const HEADER_MAX: usize = 14;

/// What the meter found wrong; the loop closes the connection for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// A message came in more data frames than allowed (an endless run of, say, empty continuations).
    TooManyFragments,
}

/// One connection's frame meter.
#[derive(Debug, Default)]
pub struct FrameMeter {
    /// The header of the frame coming in, as far as it has arrived.
    header: [u8; HEADER_MAX],
    header_len: usize,
    /// Payload bytes of the current frame still to come, once its header is whole.
    payload_left: u64,
    /// Whether the current frame's header is whole (so `payload_left` is known).
    in_payload: bool,
    /// Data frames of the message in progress; 0 between messages.
    fragments: u32,
    /// Frames completed and not yet taken by the loop ([`Self::take_frames`]); at most a turn's worth.
    frames: u32,
    /// When the frame or fragmented message now in progress began arriving; `None` between them.
    pub partial_since: Option<Instant>,
    pub violation: Option<Violation>,
}

impl FrameMeter {
    /// Counts the frames in `bytes`, the next bytes of the client's stream, which arrived at `now`. A
    /// message with more than `fragments_max` data frames sets [`Self::violation`]. Returns the frames
    /// completed.
    pub fn feed(&mut self, mut bytes: &[u8], now: Instant, fragments_max: u32) -> u32 {
        let before = self.frames;
        while !bytes.is_empty() {
            if self.partial_since.is_none() {
                self.partial_since = Some(now);
            }
            if self.in_payload {
                let take = self.payload_left.min(bytes.len() as u64);
                self.payload_left -= take;
                bytes = &bytes[take as usize..];
            } else {
                self.header[self.header_len] = bytes[0];
                self.header_len += 1;
                bytes = &bytes[1..];
                if let Some(len) = header_payload_len(&self.header[..self.header_len]) {
                    self.payload_left = len;
                    self.in_payload = true;
                }
            }
            if self.in_payload && self.payload_left == 0 {
                self.frame_done(fragments_max);
            }
        }
        self.frames - before
    }

    fn frame_done(&mut self, fragments_max: u32) {
        let (fin, opcode) = (self.header[0] & 0x80 != 0, self.header[0] & 0x0f);
        self.header_len = 0;
        self.in_payload = false;
        self.frames += 1;
        if opcode < 8 {
            // A data frame: a new message (text, binary, reserved) or a continuation of the one in progress.
            self.fragments = if opcode == 0 {
                self.fragments.saturating_add(1)
            } else {
                1
            };
            if self.fragments > fragments_max {
                self.violation.get_or_insert(Violation::TooManyFragments);
            }
            if fin {
                self.fragments = 0;
            }
        }
        if self.fragments == 0 {
            self.partial_since = None;
        }
    }

    /// Frames completed since the last call.
    pub fn take_frames(&mut self) -> u32 {
        std::mem::take(&mut self.frames)
    }
}

/// The payload length `header` announces, once all of it (extended length and mask included) is there.
fn header_payload_len(header: &[u8]) -> Option<u64> {
    if header.len() < 2 {
        return None;
    }
    let masked = header[1] & 0x80 != 0;
    let (ext, len7) = match header[1] & 0x7f {
        126 => (2, None),
        127 => (8, None),
        n => (0, Some(u64::from(n))),
    };
    let total = 2 + ext + if masked { 4 } else { 0 };
    if header.len() < total {
        return None;
    }
    Some(len7.unwrap_or_else(|| {
        header[2..2 + ext]
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::frame;
    use std::time::Duration;

    /// A masked client frame (the mask is all zeros: the meter does not unmask).
    fn client_frame(fin: bool, opcode: u8, payload_len: usize) -> Vec<u8> {
        let mut out = vec![u8::from(fin) << 7 | opcode];
        match payload_len {
            0..=125 => out.push(0x80 | payload_len as u8),
            126..=65535 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(payload_len as u16).to_be_bytes());
            }
            _ => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(payload_len as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&[0; 4]);
        out.extend(std::iter::repeat_n(7u8, payload_len));
        out
    }

    #[test]
    fn counts_frames_across_any_split_of_the_stream() {
        let mut stream = Vec::new();
        for len in [0, 5, 125, 126, 300, 70_000] {
            stream.extend(client_frame(true, 2, len));
        }
        stream.extend(client_frame(true, 9, 3)); // a ping
        for chunk in [1, 2, 3, 7, 1024, stream.len()] {
            let mut m = FrameMeter::default();
            let now = Instant::now();
            for piece in stream.chunks(chunk) {
                m.feed(piece, now, 64);
            }
            assert_eq!(m.take_frames(), 7, "chunks of {chunk}");
            assert_eq!(m.partial_since, None, "nothing left half-way");
            assert_eq!(m.violation, None);
        }
    }

    #[test]
    fn unmasked_server_frames_are_read_too() {
        let mut stream = Vec::new();
        frame::write_binary(&mut stream, &[1; 200]);
        let mut m = FrameMeter::default();
        m.feed(&stream, Instant::now(), 64);
        assert_eq!(m.take_frames(), 1);
    }

    #[test]
    fn a_frame_or_message_in_progress_is_timed_from_its_first_byte() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(3);
        let mut m = FrameMeter::default();
        let frame = client_frame(true, 2, 4000);
        m.feed(&frame[..10], t0, 64);
        m.feed(&frame[10..20], later, 64);
        assert_eq!(m.partial_since, Some(t0));
        m.feed(&frame[20..], later, 64);
        assert_eq!(m.partial_since, None);
        // A fragmented message stays in progress across its frames, control frames between them too.
        m.feed(&client_frame(false, 2, 10), t0, 64);
        m.feed(&client_frame(true, 10, 0), later, 64);
        assert_eq!(m.partial_since, Some(t0));
        m.feed(&client_frame(true, 0, 10), later, 64);
        assert_eq!(m.partial_since, None);
        assert_eq!(m.take_frames(), 4);
    }

    #[test]
    fn endless_empty_continuations_pass_the_fragment_cap() {
        let mut m = FrameMeter::default();
        let now = Instant::now();
        m.feed(&client_frame(false, 2, 0), now, 4);
        for _ in 0..3 {
            m.feed(&client_frame(false, 0, 0), now, 4);
        }
        assert_eq!(m.violation, None, "four fragments are allowed");
        m.feed(&client_frame(false, 0, 0), now, 4);
        assert_eq!(m.violation, Some(Violation::TooManyFragments));
        // A message of exactly the cap, ended by a final frame, is fine; so is the next message.
        let mut m = FrameMeter::default();
        m.feed(&client_frame(false, 1, 0), now, 4);
        m.feed(&client_frame(false, 0, 3), now, 4);
        m.feed(&client_frame(false, 0, 0), now, 4);
        m.feed(&client_frame(true, 0, 0), now, 4);
        m.feed(&client_frame(true, 2, 3), now, 4);
        assert_eq!(m.violation, None);
    }
}
