//! The conformance echo route (`--echo-path`): off by default; when on, text and binary messages come back
//! unchanged through the same connection code as /ws, with no game messages around them.

mod common;

use common::{TestServer, WAIT_MAX};
use tungstenite::Message;

#[test]
fn echo_route_is_off_by_default() {
    let server = TestServer::start(|_| {});
    assert_eq!(server.get("/echo").0, 404);
}

#[test]
fn echo_route_returns_text_and_binary_messages_unchanged() {
    let server = TestServer::start(|c| c.echo_path = Some("/echo".into()));
    let stream = std::net::TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(WAIT_MAX)).unwrap();
    let (mut ws, _) = tungstenite::client(format!("ws://{}/echo", server.addr), stream).unwrap();
    let messages = [
        Message::Text("héllo".into()),
        Message::Binary(vec![0, 1, 2, 255].into()),
        Message::Binary(vec![7; 3000].into()),
        Message::Text(String::new().into()),
    ];
    for msg in messages {
        ws.send(msg.clone()).unwrap();
        assert_eq!(ws.read().unwrap(), msg);
    }
    // Limits still apply: a message over --max-message-bytes is refused with 1009.
    ws.send(Message::Binary(vec![0; 5000].into())).unwrap();
    match ws.read().unwrap() {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 1009),
        other => panic!("expected a close, got {other:?}"),
    }
    assert_eq!(server.metric("tickcast_players"), 0);
}
