//! The `tickcast` binary: parses the flags, serves the arena, drains on SIGINT/SIGTERM.

use std::process::ExitCode;

use clap::Parser;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tickcast::sim::arena::ArenaSettings;
use tickcast::{Command, Config, Server};

/// `eprintln!` that does not panic when stderr is closed (a supervisor that stopped reading): the signal
/// thread must still start the drain, and a drained server must still exit 0.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// tickcast: an authoritative multiplayer game server (binary WebSockets, fixed tick, shared deltas),
/// serving the arena.
#[derive(Parser)]
#[command(name = "tickcast", version = tickcast::VERSION_LINE, about, max_term_width = 110)]
struct Args {
    #[command(flatten)]
    server: Config,
    #[command(flatten)]
    arena: ArenaSettings,
}

fn main() -> ExitCode {
    let Args { server: cfg, arena } = Args::parse();
    if let Err(e) = cfg.validate() {
        say!("tickcast: {e}");
        return ExitCode::from(2);
    }
    let mut server = match Server::bind(cfg.clone(), arena.room_types()) {
        Ok(server) => server,
        Err(e) => {
            say!("tickcast: cannot start on {}: {e}", cfg.listen);
            return ExitCode::FAILURE;
        }
    };
    // Signals reach the loop like any other thread would: through its handle (channel + waker).
    let handle = server.handle();
    let mut signals = match Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(signals) => signals,
        Err(e) => {
            say!("tickcast: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == SIGHUP {
                    handle.send(Command::ReloadTls);
                    continue;
                }
                say!("tickcast: signal {signal}: draining");
                handle.shutdown();
                break;
            }
        })
        .expect("spawn the signal thread");

    let addr = server.local_addr();
    let (http, ws) = match cfg.tls_cert.is_some() {
        true => ("https", "wss"),
        false => ("http", "ws"),
    };
    say!(
        "tickcast: listening on {http}://{addr} (WebSockets at {ws}://{addr}/ws/ROOM; /ws is room {}), {} Hz",
        cfg.default_room, cfg.tick_hz
    );
    match server.run() {
        Ok(()) => {
            let m = server.metrics();
            say!(
                "tickcast: drained after {} ticks, {} WebSocket connections served",
                m.ticks,
                m.websockets_total
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            say!("tickcast: event loop failed: {e}");
            ExitCode::FAILURE
        }
    }
}
