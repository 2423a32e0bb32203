//! Server-side WebSocket data frames (RFC 6455 section 5.2), written by hand so that one tick's update is
//! framed once and the very same bytes go to every connection: server frames are unmasked, so nothing in
//! them is per connection. Reading client frames stays with tungstenite.

/// The longest header of an unmasked frame: 2 bytes plus an 8-byte extended length.
pub const HEADER_LEN_MAX: usize = 10;

/// Appends one final, unmasked binary frame (opcode 0x2) carrying `payload`.
pub fn write_binary(out: &mut Vec<u8>, payload: &[u8]) {
    const FIN_BINARY: u8 = 0x80 | 0x2;
    let len = payload.len();
    out.reserve(HEADER_LEN_MAX + len);
    out.push(FIN_BINARY);
    if len < 126 {
        out.push(len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// Total length (header and payload) of the unmasked frame starting at `bytes[0]`, if its header is whole.
pub fn frame_len(bytes: &[u8]) -> Option<usize> {
    let len_byte = *bytes.get(1)? & 0x7f;
    match len_byte {
        126 => Some(4 + usize::from(u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?))),
        127 => Some(10 + u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?) as usize),
        n => Some(2 + usize::from(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tungstenite::protocol::frame::FrameHeader;

    /// Our header must parse as tungstenite's does, at each length boundary.
    #[test]
    fn headers_parse_as_tungstenite_reads_them() {
        for len in [0usize, 1, 125, 126, 127, 65_535, 65_536, 70_000] {
            let payload = vec![7u8; len];
            let mut out = Vec::new();
            write_binary(&mut out, &payload);
            let mut cursor = std::io::Cursor::new(&out[..]);
            let (header, parsed_len) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
            assert!(header.is_final);
            assert_eq!(
                header.opcode,
                tungstenite::protocol::frame::coding::OpCode::Data(
                    tungstenite::protocol::frame::coding::Data::Binary
                )
            );
            assert!(header.mask.is_none());
            assert_eq!(parsed_len, len as u64);
            assert_eq!(out.len() - cursor.position() as usize, len);
            assert_eq!(frame_len(&out), Some(out.len()));
        }
    }
}
