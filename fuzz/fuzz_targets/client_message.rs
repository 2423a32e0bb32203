//! Arbitrary bytes as one client WebSocket message of the arena game: `decode_client` must never panic,
//! and whatever it accepts must survive `encode` then `decode_client` unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickcast::proto::{self, ClientMsg, NAME_LEN_MAX};
use tickcast::sim::arena::ArenaInput;
use tickcast::ticket::TICKET_LEN_MAX;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = proto::decode_client::<ArenaInput>(data) else {
        return;
    };
    if let ClientMsg::Hello { name, ticket, .. } = &msg {
        assert!(
            name.len() <= NAME_LEN_MAX,
            "accepted a {}-byte name",
            name.len()
        );
        assert!(
            ticket.len() <= TICKET_LEN_MAX,
            "accepted a {}-byte ticket",
            ticket.len()
        );
    }
    let bytes = proto::encode(&msg);
    // The canonical encoding is never longer than what was accepted.
    assert!(
        bytes.len() <= data.len(),
        "{msg:?}: {} > {} bytes",
        bytes.len(),
        data.len()
    );
    let again = proto::decode_client::<ArenaInput>(&bytes)
        .unwrap_or_else(|e| panic!("{msg:?} re-encoded as {bytes:02x?} does not decode: {e}"));
    assert_eq!(again, msg, "round trip through {bytes:02x?}");
});
