//! The bots for another game than the arena: the teams example game (`examples/teams/game.rs`) on a real
//! server, played by the swarm through `bots::run_with` and the `BotGame` of `bots/examples/teams_bots/`.

#[path = "../../examples/teams/game.rs"]
mod game;
#[path = "../examples/teams_bots/teams.rs"]
mod teams;

use bots::{Args, Plan};
use clap::Parser;
use teams::Teams;
use tickcast::{Config, Server};

/// Verifying and skimming bots, some of them flapping (resuming their player), follow the teams world:
/// every checksum of the verifying ones matches, inputs are acknowledged through the player's
/// `Player` entity, and the run passes.
#[test]
fn the_swarm_plays_the_teams_game() {
    let (tx, rx) = std::sync::mpsc::channel();
    // The server is built on its own thread: its room types are not `Send`.
    let thread = std::thread::spawn(move || {
        let cfg = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Config::default()
        };
        let types = game::TeamsSettings::default().room_types();
        let mut server = Server::bind(cfg, types).expect("bind");
        tx.send((server.local_addr(), server.handle())).unwrap();
        server.run().expect("server loop");
    });
    let (addr, handle) = rx.recv().expect("server started");

    let url = format!("ws://{addr}/ws");
    let argv = [
        "bots",
        "--url",
        &url,
        "--count",
        "6",
        "--threads",
        "1",
        "--duration",
        "3s",
        "--mix",
        "wander=2,flapper=1",
        "--verify-fraction",
        "0.5",
    ];
    let plan = Plan::new(Args::try_parse_from(argv).expect("valid flags")).expect("valid plan");
    let (_never_stopped, stop) = crossbeam_channel::bounded::<()>(1);
    let mut errors = Vec::new();
    let report = bots::run_with::<Teams>(plan, &stop, |_| {}, |e| errors.push(e.clone())).unwrap();
    handle.shutdown();
    thread.join().expect("server thread");

    let summary = report.table();
    assert!(report.passed, "{summary}");
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(report.bots_ever_connected, 6, "{summary}");
    assert_eq!(report.bots_verifying, 3, "{summary}");
    assert!(report.checksums_verified > 0, "{summary}");
    assert!(report.checksums_unchecked > 0, "{summary}");
    assert_eq!(report.checksum_mismatches, 0, "{summary}");
    assert_eq!(report.protocol_errors, 0, "{summary}");
    assert!(report.inputs.sent > 0, "{summary}");
    assert!(report.inputs.acked > 0, "{summary}");
}
