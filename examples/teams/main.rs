//! A second game on tickcast, as a worked example: two teams, squads of units, hits and scores that no
//! client misses, a match that ends (`game.rs`; `docs/GAME-API.md` walks through it).
//!
//! ```text
//! cargo run --example teams                    # on 127.0.0.1:7000
//! cargo run --example teams -- 127.0.0.1:7100  # elsewhere
//! ```
//!
//! Rooms: `ws://HOST/ws` is the default room; `ws://HOST/ws/NAME?units=5&score=10&match_s=120` creates
//! room NAME with those rules (the first client to name it decides them). Ctrl-C stops it at once (the
//! `tickcast` binary, `src/main.rs`, shows how to drain on SIGTERM instead).

mod game;

use tickcast::{Config, Server};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen = match std::env::args().nth(1) {
        Some(addr) => addr.parse()?,
        None => Config::default().listen,
    };
    let cfg = Config {
        listen,
        ..Config::default()
    };
    let mut server = Server::bind(cfg, game::TeamsSettings::default().room_types())?;
    println!(
        "teams on ws://{}/ws (or /ws/ROOM?units=3&score=20&match_s=180)",
        server.local_addr()
    );
    server.run()?;
    Ok(())
}
