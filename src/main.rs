//! The `tickcast` binary: parses the flags, serves the arena, drains on SIGINT/SIGTERM.

use std::process::ExitCode;

use clap::Parser;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tickcast::config::sources::{self, Sources};
use tickcast::sim::arena::ArenaSettings;
use tickcast::{Command, Config, Server};

/// `eprintln!` that does not panic when stderr is closed, for what is said before the log is set up (a
/// bad flag or log filter).
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
    #[command(flatten)]
    log: LogSettings,
    #[command(flatten)]
    sources: Sources,
}

/// Where the log goes and what it holds (docs/OPERATIONS.md, "Logs"): stderr, one event per line.
#[derive(clap::Args)]
struct LogSettings {
    /// How log events are written to stderr: `text` (a line each) or `json` (an object per line).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Which events are logged, in RUST_LOG syntax (`info`, `debug`, `warn,tickcast::server=debug`).
    /// Without it (flag, TICKCAST_LOG_FILTER or the file): the RUST_LOG variable, else `info`.
    #[arg(long, value_name = "FILTER")]
    log_filter: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Installs the subscriber: stderr, the filter, the format. A write that fails (stderr closed: a
/// supervisor that stopped reading) is dropped without a word: the signal thread must still start the
/// drain, and a drained server must still exit 0.
fn install_logs(log: &LogSettings) -> Result<(), String> {
    let env = std::env::var("RUST_LOG")
        .ok()
        .filter(|f| !f.trim().is_empty());
    let directives = log
        .log_filter
        .clone()
        .or(env)
        .unwrap_or_else(|| "info".into());
    let filter = tracing_subscriber::EnvFilter::builder()
        .parse(&directives)
        .map_err(|e| format!("--log-filter {directives:?}: {e}"))?;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    let installed = match log.log_format {
        LogFormat::Text => logs.try_init(),
        LogFormat::Json => logs.json().flatten_event(true).try_init(),
    };
    installed.map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    // Flags, then TICKCAST_* variables, then the --config file, then the defaults.
    let parsed = sources::parse::<Args, _, _>(std::env::args_os()).unwrap_or_else(|e| e.exit());
    if parsed.value.sources.print_config {
        print!("{}", parsed.to_toml());
        return ExitCode::SUCCESS;
    }
    let Args {
        server: cfg,
        arena,
        log,
        sources: _,
    } = parsed.value;
    if let Err(e) = cfg.validate() {
        say!("tickcast: {e}");
        return ExitCode::from(2);
    }
    if let Err(e) = install_logs(&log) {
        say!("tickcast: {e}");
        return ExitCode::from(2);
    }
    let mut server = match Server::bind(cfg.clone(), arena.room_types()) {
        Ok(server) => server,
        Err(e) => {
            tracing::error!(listen = %cfg.listen, "cannot start on {}: {e}", cfg.listen);
            return ExitCode::FAILURE;
        }
    };
    // Signals reach the loop like any other thread would: through its handle (channel + waker).
    let handle = server.handle();
    let mut signals = match Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(signals) => signals,
        Err(e) => {
            tracing::error!("cannot install signal handlers: {e}");
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
                tracing::info!(signal, "signal received: draining");
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
    // The first line of the log: scripts and tests read the address from it (`listening on http://...`).
    tracing::info!(
        %addr,
        tls = cfg.tls_cert.is_some(),
        default_room = %cfg.default_room,
        tick_hz = cfg.tick_hz,
        "listening on {http}://{addr} (WebSockets at {ws}://{addr}/ws/ROOM; /ws is room {}), {} Hz",
        cfg.default_room,
        cfg.tick_hz
    );
    if let Some(token) = server.dashboard_token_required() {
        let with = if token { " (token required)" } else { "" };
        tracing::info!(
            token_required = token,
            "dashboard at {http}://{addr}/dashboard{with}"
        );
    }
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("event loop failed: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_of_the_binary_has_its_tickcast_variable() {
        let command = sources::command::<Args>();
        for arg in command.get_arguments() {
            let Some(long) = arg.get_long() else {
                continue;
            };
            let env = arg.get_env().and_then(|e| e.to_str());
            assert_eq!(env, Some(sources::env_name(long).as_str()), "--{long}");
            assert!(env.unwrap().starts_with("TICKCAST_"), "--{long}");
        }
    }
}
