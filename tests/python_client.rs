//! An independent client in Python (the `websockets` library, written from docs/PROTOCOL.md alone) joins,
//! mirrors the world, verifies checksums and sees its input acknowledged.

mod common;

use std::process::Command;

use common::TestServer;

/// The interpreter `scripts/test.sh` prepared (a venv with `websockets`), else the system's.
fn python() -> String {
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python");
    if std::path::Path::new(venv).exists() {
        venv.to_string()
    } else {
        "python3".to_string()
    }
}

#[test]
fn python_websockets_client_mirrors_the_world_and_matches_every_checksum() {
    let server = TestServer::start(|c| {
        c.npcs = 200;
        c.tick_hz = 50;
        c.checksum_every_ticks = 5;
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/client.py");
    let out = Command::new(python())
        .args([script, &server.url(), "5"])
        .output()
        .expect("run python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python client failed (scripts/test.sh installs its `websockets` into .venv):\n{stderr}"
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| -> u64 {
        let at = summary
            .find(&format!("\"{name}\": "))
            .unwrap_or_else(|| panic!("{name} in {summary}"));
        summary[at + name.len() + 4..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(field("checksums_verified") >= 5, "{summary}");
    assert_eq!(field("acked_seq"), 1, "{summary}");
    assert_eq!(
        field("entities"),
        201,
        "200 wanderers and the python player: {summary}"
    );
    assert_eq!(
        server.metric("tickcast_connections_closed_total{reason=\"malformed_message\"}"),
        0
    );
}
