//! Every setting of a run, each a flag with its unit and default (`bots --help` prints them), and the
//! [`Plan`] they validate into.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::backoff::Backoff;
use crate::mix::Mix;

/// Most bots one run may hold.
pub const BOTS_MAX: u32 = 100_000;
/// Most worker threads.
pub const THREADS_MAX: usize = 256;
/// Longest any time setting may be (`--duration`, the ramp-up, every `-ms` flag): a day.
pub const TIME_SETTING_MAX: Duration = Duration::from_secs(24 * 60 * 60);

/// bots: a swarm of real WebSocket players for a tickcast server (load, correctness check, report).
#[derive(Debug, Clone, Parser)]
#[command(name = "bots", version, about, max_term_width = 110)]
pub struct Args {
    /// WebSocket URL of the server. Plain `ws://` only: to test behind a TLS proxy, point at its plain side.
    #[arg(long, default_value = "ws://127.0.0.1:7000/ws")]
    pub url: String,

    /// Bots to run (1..=100000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=i64::from(BOTS_MAX)))]
    pub count: u32,

    /// How long the run lasts, ramp-up included ("60s", "2m", "1500ms").
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: Duration,

    /// Worker threads, each one mio loop over many bots [default: the machine's cores].
    #[arg(long)]
    pub threads: Option<usize>,

    /// Connections started per second during ramp-up, over all threads.
    #[arg(long, default_value_t = 500.0)]
    pub connect_rate: f64,

    /// Behaviour weights: wander, idle, slow, flapper, spectator, rejoiner (e.g.
    /// wander=80,slow=10,flapper=10).
    #[arg(long, default_value = "wander")]
    pub mix: Mix,

    /// Bytes per second a slow bot reads. Pick it below the bytes/s per bot of a normal bot.
    #[arg(long, default_value_t = 8192)]
    pub slow_bps: u64,

    /// Receive buffer (SO_RCVBUF) of a slow bot's socket, in bytes; the kernel may round it up.
    #[arg(long, default_value_t = 4096)]
    pub slow_rcvbuf_bytes: usize,

    /// Mean time a flapper (or rejoiner) stays connected, in ms; each stay is uniform in half to one and a
    /// half of it.
    #[arg(long, default_value_t = 5_000)]
    pub flap_ms: u64,

    /// Time between two inputs of a bot, in ms.
    #[arg(long, default_value_t = 50)]
    pub input_interval_ms: u64,

    /// Time a connect attempt has from TCP connect to `Welcome`, in ms.
    #[arg(long, default_value_t = 10_000)]
    pub connect_timeout_ms: u64,

    /// Connect attempts in a row that may fail before a bot gives up (at least 1).
    #[arg(long, default_value_t = 6)]
    pub connect_attempts: u32,

    /// Retry delay ceiling after the first failure, in ms; it doubles with each further failure.
    #[arg(long, default_value_t = 200)]
    pub retry_base_ms: u64,

    /// Largest retry delay, in ms.
    #[arg(long, default_value_t = 5_000)]
    pub retry_max_ms: u64,

    /// At the end of the run, time bots have to close cleanly (close frame, echo, EOF), in ms.
    #[arg(long, default_value_t = 2_000)]
    pub close_timeout_ms: u64,

    /// Seed of the bots' random numbers (directions, flap times, jitter).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

impl Default for Args {
    fn default() -> Self {
        Args::parse_from(["bots"])
    }
}

/// Where the bots connect: the URL as given, and the address it resolved to once, at start.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub addr: SocketAddr,
}

impl Target {
    /// Parses a `ws://host[:port]/path` URL and resolves its host.
    pub fn resolve(url: &str) -> Result<Target, String> {
        let uri: tungstenite::http::Uri = url
            .parse()
            .map_err(|e| format!("--url {url:?} is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("ws") => {}
            Some("wss") => return Err(
                "--url: wss:// is not supported; point the bots at the plain side of the TLS proxy"
                    .to_string(),
            ),
            _ => return Err(format!("--url {url:?} must start with ws://")),
        }
        let host = uri
            .host()
            .ok_or_else(|| format!("--url {url:?} has no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(80);
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("--url: cannot resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("--url: {host} resolves to no address"))?;
        Ok(Target {
            url: url.to_string(),
            addr,
        })
    }
}

/// A validated run: the flags plus what was derived from them.
#[derive(Debug, Clone)]
pub struct Plan {
    pub args: Args,
    pub target: Target,
    pub threads: usize,
    pub backoff: Backoff,
}

impl Plan {
    pub fn new(args: Args) -> Result<Plan, String> {
        if !(args.connect_rate.is_finite() && args.connect_rate > 0.0) {
            return Err("--connect-rate must be a positive number".to_string());
        }
        let positive = [
            ("--slow-bps", args.slow_bps),
            ("--flap-ms", args.flap_ms),
            ("--input-interval-ms", args.input_interval_ms),
            ("--connect-timeout-ms", args.connect_timeout_ms),
            ("--connect-attempts", u64::from(args.connect_attempts)),
            ("--retry-base-ms", args.retry_base_ms),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} must be at least 1"));
        }
        let times_ms = [
            ("--flap-ms", args.flap_ms),
            ("--input-interval-ms", args.input_interval_ms),
            ("--connect-timeout-ms", args.connect_timeout_ms),
            ("--retry-max-ms", args.retry_max_ms),
            ("--close-timeout-ms", args.close_timeout_ms),
        ];
        if let Some((name, _)) = times_ms
            .iter()
            .find(|(_, ms)| Duration::from_millis(*ms) > TIME_SETTING_MAX)
        {
            return Err(format!("{name} must be at most a day"));
        }
        if args.duration > TIME_SETTING_MAX {
            return Err("--duration must be at most a day".to_string());
        }
        if f64::from(args.count) / args.connect_rate > TIME_SETTING_MAX.as_secs_f64() {
            return Err("--connect-rate is so low that the ramp-up takes over a day".to_string());
        }
        if args.retry_max_ms < args.retry_base_ms {
            return Err("--retry-max-ms must be at least --retry-base-ms".to_string());
        }
        if args.duration.is_zero() {
            return Err("--duration must be longer than 0".to_string());
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = args.threads.unwrap_or(cores);
        if threads == 0 || threads > THREADS_MAX {
            return Err(format!("--threads must be within 1..={THREADS_MAX}"));
        }
        // A thread with no bot would only idle.
        let threads = threads.min(args.count as usize);
        let target = Target::resolve(&args.url)?;
        let backoff = Backoff {
            base: Duration::from_millis(args.retry_base_ms),
            cap: Duration::from_millis(args.retry_max_ms),
            attempts_max: args.connect_attempts,
        };
        Ok(Plan {
            args,
            target,
            threads,
            backoff,
        })
    }

    pub fn input_interval(&self) -> Duration {
        Duration::from_millis(self.args.input_interval_ms)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.args.connect_timeout_ms)
    }

    pub fn close_timeout(&self) -> Duration {
        Duration::from_millis(self.args.close_timeout_ms)
    }

    /// When bot `index` makes its first connect attempt, after the start of the run.
    pub fn ramp_offset(&self, index: usize) -> Duration {
        Duration::from_secs_f64(index as f64 / self.args.connect_rate)
    }

    /// How long until the last bot makes its first connect attempt.
    pub fn ramp_up(&self) -> Duration {
        self.ramp_offset(self.args.count as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut argv = vec!["bots", "--url", "ws://127.0.0.1:7000/ws"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).unwrap()
    }

    #[test]
    fn the_example_command_line_parses() {
        let plan = Plan::new(args(&[
            "--count",
            "2000",
            "--duration",
            "60s",
            "--threads",
            "4",
        ]))
        .unwrap();
        assert_eq!(plan.args.count, 2000);
        assert_eq!(plan.args.duration, Duration::from_secs(60));
        assert_eq!(plan.threads, 4);
        assert_eq!(plan.target.addr, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(plan.ramp_offset(1000), Duration::from_secs(2));
    }

    #[test]
    fn bad_settings_are_refused_with_the_flag_named() {
        assert!(Args::try_parse_from(["bots", "--count", "0"]).is_err());
        assert!(Args::try_parse_from(["bots", "--mix", "walker=1"]).is_err());
        assert!(Args::try_parse_from(["bots", "--duration", "soon"]).is_err());
        let err = Plan::new(args(&["--slow-bps", "0"])).unwrap_err();
        assert!(err.contains("--slow-bps"), "{err}");
        let err = Plan::new(args(&["--threads", "0"])).unwrap_err();
        assert!(err.contains("--threads"), "{err}");
        let err = Plan::new(args(&["--connect-rate", "0"])).unwrap_err();
        assert!(err.contains("--connect-rate"), "{err}");
        let err = Plan::new(args(&["--connect-rate", "0.000001"])).unwrap_err();
        assert!(err.contains("--connect-rate"), "{err}");
        let err = Plan::new(args(&["--flap-ms", "100000000000"])).unwrap_err();
        assert!(err.contains("--flap-ms"), "{err}");
        let err = Plan::new(args(&["--duration", "3days"])).unwrap_err();
        assert!(err.contains("--duration"), "{err}");
        for url in ["wss://example.com/ws", "http://127.0.0.1/ws", "nonsense"] {
            assert!(Target::resolve(url).is_err(), "{url}");
        }
    }

    #[test]
    fn threads_never_outnumber_bots() {
        let plan = Plan::new(args(&["--count", "3", "--threads", "8"])).unwrap();
        assert_eq!(plan.threads, 3);
    }
}
