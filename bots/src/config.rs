//! Every setting of a run, each a flag with its unit and default (`bots --help` prints them), and the
//! [`Plan`] they validate into.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use rustls::pki_types::ServerName;

use crate::backoff::Backoff;
use crate::matchmake::Matchmaker;
use crate::mix::Mix;
use crate::tls::{self, Trust};

/// Most bots one run may hold.
pub const BOTS_MAX: u32 = 100_000;
/// Most worker threads.
pub const THREADS_MAX: usize = 256;
/// Bots when neither --count nor --rooms with --room-size says how many.
pub const DEFAULT_COUNT: u32 = 100;
/// What room names start with, before the room's number.
pub const DEFAULT_ROOM_PREFIX: &str = "bots-";
/// Longest room name the protocol allows, in bytes.
pub const ROOM_NAME_BYTES_MAX: usize = 64;
/// Longest any time setting may be (`--duration`, the ramp-up, every `-ms` flag): a day.
pub const TIME_SETTING_MAX: Duration = Duration::from_secs(24 * 60 * 60);

/// bots: a swarm of real WebSocket players for a tickcast server (load, correctness check, report).
#[derive(Debug, Clone, Parser)]
#[command(name = "bots", version, about, max_term_width = 110)]
pub struct Args {
    /// WebSocket URL of the server: `ws://`, or `wss://` for TLS (the server's certificate is checked
    /// against the system's roots, or --ca-file; --insecure checks nothing).
    #[arg(long, default_value = "ws://127.0.0.1:7000/ws")]
    pub url: String,

    /// Bots to run (1..=100000) [default: 100; with both --rooms and --room-size, their product].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(BOTS_MAX)))]
    pub count: Option<u32>,

    /// Spread the bots over this many rooms, named --room-prefix then 0..K-1 (bots-0, bots-1, ...): a bot
    /// of room R connects to --url with `/R` appended (ws://HOST:PORT/ws/bots-3) and checks that `Welcome`
    /// names R. Bots fill the rooms in order, in contiguous blocks (sizes differ by at most one). With
    /// --room-size too, the run has K x N bots (--count, if given, must say the same). Without --rooms
    /// and --room-size every bot connects to --url as given.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(BOTS_MAX)))]
    pub rooms: Option<u32>,

    /// Bots per room: bots 0..N-1 go to the first room, N..2N-1 to the second, and so on. Alone (or with
    /// --count) it makes ceil(count / N) rooms, the last one holding the rest; with --rooms K it makes the
    /// count K x N.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(BOTS_MAX)))]
    pub room_size: Option<u32>,

    /// Prefix of the room names of --rooms / --room-size; the room's number follows it. A room name is 1
    /// to 64 bytes of A-Z a-z 0-9 _ - (docs/PROTOCOL.md, Rooms).
    #[arg(long, default_value = DEFAULT_ROOM_PREFIX)]
    pub room_prefix: String,

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

    /// The share of bots that verify (mirror the whole world, check every `Checksum`), spread evenly over
    /// the bots; the others skim: they read each update only up to their own entity (acks, the order of
    /// updates and their own entity are still checked, checksums are counted unchecked), so one core
    /// drives several times more of them. 1: every bot verifies; 0: none does.
    #[arg(long, default_value_t = 1.0)]
    pub verify_fraction: f64,

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

    /// Ask this matchmaker where to connect: the `http://host:port` base URL of any process (cluster or
    /// standalone). Before every connect attempt a bot POSTs `/matchmake` with its room (--rooms /
    /// --room-size, or the room --url names) or --matchmake-type, then opens its WebSocket at the
    /// answer's `connect` URL (seat ticket included). --url is then not dialled.
    #[arg(long, value_name = "URL")]
    pub matchmake: Option<String>,

    /// With --matchmake: the room type to ask for. Without --rooms / --room-size each bot asks for "any
    /// room of this type" until it has played (or watched) in the room it was given, then for that room;
    /// with them, each planned room is created with this type.
    #[arg(long, value_name = "TYPE")]
    pub matchmake_type: Option<String>,

    /// Time a matchmaking request has from its TCP connect to the whole answer, in ms.
    #[arg(long, default_value_t = 5_000)]
    pub matchmake_timeout_ms: u64,

    /// For wss:// and https://: trust the certificates in this PEM file (a test CA, or the server's own
    /// self-signed certificate) and nothing else, instead of the system's roots.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,

    /// DANGEROUS, for local test runs only: for wss:// and https://, accept any certificate for any name
    /// without verifying it. The traffic is still encrypted, but anyone between the bots and the server
    /// can read and change it. Never against a server across a network you do not control.
    #[arg(long, conflicts_with = "ca_file")]
    pub insecure: bool,
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
    /// `wss://`: the name the server's certificate is checked for (the URL's host); `None`: plain.
    pub tls: Option<ServerName<'static>>,
    /// `ws://host:port` (or `wss://`) and the path without a trailing `/`, and the query (with its `?`,
    /// or empty): what a room's URL is built from ([`Target::room_url`]).
    base: String,
    query: String,
    /// The room the URL itself names, when its path ends in `/ws/NAME`: every bot then checks that
    /// `Welcome` says that room.
    pub room: Option<String>,
}

impl Target {
    /// Parses a `ws://host[:port]/path` (or `wss://`) URL and resolves its host.
    pub fn resolve(url: &str) -> Result<Target, String> {
        let uri: tungstenite::http::Uri = url
            .parse()
            .map_err(|e| format!("--url {url:?} is not a URL: {e}"))?;
        let (scheme, default_port) = match uri.scheme_str() {
            Some("ws") => ("ws", 80),
            Some("wss") => ("wss", 443),
            _ => return Err(format!("--url {url:?} must start with ws:// or wss://")),
        };
        let host = uri
            .host()
            .ok_or_else(|| format!("--url {url:?} has no host"))?;
        let authority = uri.authority().map_or(host, |a| a.as_str()).to_string();
        let tls = match scheme {
            "wss" => Some(tls::server_name(host).map_err(|e| format!("--url: {e}"))?),
            _ => None,
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(default_port);
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("--url: cannot resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("--url: {host} resolves to no address"))?;
        let path = uri.path().trim_end_matches('/');
        let room = path
            .rsplit_once('/')
            .filter(|(before, name)| before.ends_with("/ws") && valid_room_name(name))
            .map(|(_, name)| name.to_string());
        Ok(Target {
            url: url.to_string(),
            addr,
            tls,
            base: format!("{scheme}://{authority}{path}"),
            query: uri.query().map_or(String::new(), |q| format!("?{q}")),
            room,
        })
    }

    /// The URL of room `name`: the path of --url with `/name` appended, its query kept
    /// (`ws://h/ws?type=duel` -> `ws://h/ws/bots-0?type=duel`).
    pub fn room_url(&self, name: &str) -> String {
        format!("{}/{name}{}", self.base, self.query)
    }
}

/// Whether `name` is a room name the protocol allows: 1 to 64 bytes of `A-Z a-z 0-9 _ -`.
pub fn valid_room_name(name: &str) -> bool {
    (1..=ROOM_NAME_BYTES_MAX).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// How the bots are spread over rooms (--rooms, --room-size): `count` rooms named `prefix` + number,
/// filled in contiguous blocks of bots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rooms {
    pub count: u32,
    /// Bots per room (the last room may hold fewer); `None`: `bots` split as evenly as blocks allow.
    pub size: Option<u32>,
    pub prefix: String,
    /// Bots in the run.
    pub bots: u32,
}

impl Rooms {
    /// The room (0-based) of bot `bot`.
    pub fn of(&self, bot: usize) -> u32 {
        let room = match self.size {
            Some(size) => bot as u64 / u64::from(size),
            None => bot as u64 * u64::from(self.count) / u64::from(self.bots),
        };
        room.min(u64::from(self.count - 1)) as u32
    }

    pub fn name(&self, room: u32) -> String {
        format!("{}{room}", self.prefix)
    }

    /// How many bots room `room` holds.
    pub fn bots_in(&self, room: u32) -> u32 {
        // Blocks are contiguous and ascending: count the bots below the room's end.
        let first = |r: u32| -> u64 {
            if r >= self.count {
                return u64::from(self.bots);
            }
            match self.size {
                Some(size) => (u64::from(r) * u64::from(size)).min(u64::from(self.bots)),
                // The smallest i with i * count / bots >= r.
                None => (u64::from(r) * u64::from(self.bots)).div_ceil(u64::from(self.count)),
            }
        };
        (first(room + 1) - first(room)) as u32
    }
}

/// A validated run: the flags plus what was derived from them.
#[derive(Debug, Clone)]
pub struct Plan {
    pub args: Args,
    pub target: Target,
    /// Bots in the run: --count, or --rooms x --room-size, or the default.
    pub count: u32,
    /// How the bots are spread over rooms; `None`: every bot connects to --url as given.
    pub rooms: Option<Rooms>,
    pub threads: usize,
    pub backoff: Backoff,
    /// `--matchmake`: where bots ask before connecting; `None`: they connect to --url.
    pub matchmaker: Option<Matchmaker>,
    /// The TLS settings of `wss://` and `https://` connections (what is trusted: --ca-file, --insecure
    /// or the system's roots). Built when --url is `wss://`, --matchmake `https://`, or --ca-file or
    /// --insecure is given; with `--matchmake` otherwise, from the system's roots if it has some (a
    /// matchmaker may answer `wss://`). `None`: no TLS connection can be made.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Plan {
    pub fn new(args: Args) -> Result<Plan, String> {
        if !(args.connect_rate.is_finite() && args.connect_rate > 0.0) {
            return Err("--connect-rate must be a positive number".to_string());
        }
        if !(0.0..=1.0).contains(&args.verify_fraction) {
            return Err("--verify-fraction must be between 0 and 1".to_string());
        }
        let positive = [
            ("--slow-bps", args.slow_bps),
            ("--flap-ms", args.flap_ms),
            ("--input-interval-ms", args.input_interval_ms),
            ("--connect-timeout-ms", args.connect_timeout_ms),
            ("--connect-attempts", u64::from(args.connect_attempts)),
            ("--retry-base-ms", args.retry_base_ms),
            ("--matchmake-timeout-ms", args.matchmake_timeout_ms),
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
            ("--matchmake-timeout-ms", args.matchmake_timeout_ms),
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
        let target = Target::resolve(&args.url)?;
        let (count, rooms) = rooms_of(&args, &target)?;
        let matchmaker = match &args.matchmake {
            Some(base) => {
                let m = Matchmaker::new(base, args.matchmake_type.clone())?;
                if rooms.is_none() && target.room.is_none() && m.room_type.is_none() {
                    return Err(
                        "--matchmake needs a room to ask for: --rooms / --room-size, a --url \
                                naming a room (ws://HOST:PORT/ws/NAME), or --matchmake-type"
                            .to_string(),
                    );
                }
                Some(m)
            }
            None if args.matchmake_type.is_some() => {
                return Err("--matchmake-type needs --matchmake".to_string())
            }
            None => None,
        };
        let trust = match (&args.ca_file, args.insecure) {
            (Some(_), true) => return Err("--ca-file and --insecure contradict each other".into()),
            (Some(path), false) => Trust::CaFile(path.clone()),
            (None, true) => Trust::Insecure,
            (None, false) => Trust::System,
        };
        let needs_tls = target.tls.is_some()
            || matchmaker.as_ref().is_some_and(|m| m.tls.is_some())
            || trust != Trust::System;
        let tls = if needs_tls {
            Some(tls::client_config(&trust)?)
        } else if matchmaker.is_some() {
            tls::client_config(&trust).ok()
        } else {
            None
        };
        if f64::from(count) / args.connect_rate > TIME_SETTING_MAX.as_secs_f64() {
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
        let threads = threads.min(count as usize);
        let backoff = Backoff {
            base: Duration::from_millis(args.retry_base_ms),
            cap: Duration::from_millis(args.retry_max_ms),
            attempts_max: args.connect_attempts,
        };
        Ok(Plan {
            args,
            target,
            count,
            rooms,
            threads,
            backoff,
            matchmaker,
            tls,
        })
    }

    pub fn matchmake_timeout(&self) -> Duration {
        Duration::from_millis(self.args.matchmake_timeout_ms)
    }

    /// Whether the rooms are the matchmaker's choice (`--matchmake-type` without planned rooms): each bot
    /// learns its room from its first answer, and the report lists the rooms the bots were placed in.
    pub fn placed_rooms(&self) -> bool {
        self.matchmaker.is_some() && self.rooms.is_none() && self.target.room.is_none()
    }

    /// What the bots are pointed at, for the report: the matchmaker's URL, else --url.
    pub fn target_label(&self) -> String {
        match &self.matchmaker {
            Some(m) => format!("{} (matchmaking)", m.url),
            None => self.target.url.clone(),
        }
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
        self.ramp_offset(self.count as usize)
    }

    /// Rooms the run plans: --rooms / --room-size, else the one room of --url.
    pub fn room_count(&self) -> u32 {
        self.rooms.as_ref().map_or(1, |r| r.count)
    }

    /// The room (0-based) of bot `bot`; 0 without rooms.
    pub fn room_of(&self, bot: usize) -> u32 {
        self.rooms.as_ref().map_or(0, |r| r.of(bot))
    }

    /// The name of room `room` the bots ask for and expect in `Welcome`: the planned one, or the one
    /// --url names; `None` when --url names none (the server's default room, whatever its name).
    /// Whether bot `id` verifies (`--verify-fraction`): bot `id` does when the fraction's running count
    /// steps up at it, so verifying bots are spread evenly over the ids (and so over rooms and threads).
    pub fn verifies(&self, id: usize) -> bool {
        let f = self.args.verify_fraction;
        (((id + 1) as f64) * f).floor() > ((id as f64) * f).floor()
    }

    pub fn room_name(&self, room: u32) -> Option<String> {
        match &self.rooms {
            Some(rooms) => Some(rooms.name(room)),
            None => self.target.room.clone(),
        }
    }

    /// Bots in room `room`.
    pub fn bots_in(&self, room: u32) -> u32 {
        self.rooms.as_ref().map_or(self.count, |r| r.bots_in(room))
    }

    /// The URL a bot of room `room` connects to.
    pub fn url_of(&self, room: u32) -> String {
        match &self.rooms {
            Some(rooms) => self.target.room_url(&rooms.name(room)),
            None => self.target.url.clone(),
        }
    }
}

/// The bot count and the rooms of --count, --rooms and --room-size (see their help); contradictory
/// combinations are refused.
fn rooms_of(args: &Args, target: &Target) -> Result<(u32, Option<Rooms>), String> {
    let (count, rooms, size) = match (args.count, args.rooms, args.room_size) {
        (count, None, None) => return Ok((count.unwrap_or(DEFAULT_COUNT), None)),
        (count, Some(k), None) => {
            let count = count.unwrap_or(DEFAULT_COUNT);
            if k > count {
                return Err(format!(
                    "--rooms {k} needs at least {k} bots, one per room, but --count is {count}"
                ));
            }
            (count, k, None)
        }
        (count, None, Some(n)) => {
            let count = count.unwrap_or(DEFAULT_COUNT);
            (count, count.div_ceil(n), Some(n))
        }
        (count, Some(k), Some(n)) => {
            let product = u64::from(k) * u64::from(n);
            if product > u64::from(BOTS_MAX) {
                return Err(format!(
                    "--rooms {k} x --room-size {n} is {product} bots, over the {BOTS_MAX} one run may hold"
                ));
            }
            let product = product as u32;
            match count {
                Some(c) if c != product => {
                    return Err(format!(
                        "--count {c} contradicts --rooms {k} x --room-size {n} = {product} bots: give two of the three"
                    ))
                }
                _ => (product, k, Some(n)),
            }
        }
    };
    if let Some(room) = &target.room {
        return Err(format!(
            "--url already names room {room}; with --rooms or --room-size give the base URL (ending in /ws): \
             each bot appends its room"
        ));
    }
    let prefix = args.room_prefix.clone();
    let last = format!("{prefix}{}", rooms - 1);
    if !valid_room_name(&last) {
        return Err(format!(
            "--room-prefix {prefix:?} makes room names like {last:?}: a room name is 1 to \
             {ROOM_NAME_BYTES_MAX} bytes of A-Z a-z 0-9 _ -"
        ));
    }
    Ok((
        count,
        Some(Rooms {
            count: rooms,
            size,
            prefix,
            bots: count,
        }),
    ))
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
        assert_eq!(plan.count, 2000);
        assert_eq!(plan.rooms, None);
        assert_eq!(plan.url_of(0), "ws://127.0.0.1:7000/ws");
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
        for url in ["http://127.0.0.1/ws", "nonsense", "wss://not a host/ws"] {
            assert!(Target::resolve(url).is_err(), "{url}");
        }
    }

    #[test]
    fn wss_urls_speak_tls_to_port_443_unless_given_and_room_urls_stay_wss() {
        let t = Target::resolve("wss://127.0.0.1/ws").unwrap();
        assert_eq!(t.addr, "127.0.0.1:443".parse().unwrap());
        assert!(matches!(t.tls, Some(ServerName::IpAddress(_))));
        assert_eq!(Target::resolve("ws://127.0.0.1/ws").unwrap().tls, None);
        let argv = [
            "bots",
            "--url",
            "wss://127.0.0.1:7443/ws?type=arena",
            "--rooms",
            "2",
            "--insecure",
        ];
        let plan = Plan::new(Args::try_parse_from(argv).unwrap()).unwrap();
        assert_eq!(plan.url_of(1), "wss://127.0.0.1:7443/ws/bots-1?type=arena");
        assert_eq!(plan.target.addr.port(), 7443);
        assert!(plan.tls.is_some());
        // A plain run makes no TLS settings; --ca-file and --insecure are refused together, and a
        // --ca-file that is not there is named.
        assert!(Plan::new(args(&[])).unwrap().tls.is_none());
        let both = ["bots", "--insecure", "--ca-file", "x.pem"];
        assert!(Args::try_parse_from(both).is_err());
        let err = Plan::new(args(&["--ca-file", "/nonexistent/ca.pem"])).unwrap_err();
        assert!(err.contains("--ca-file /nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn threads_never_outnumber_bots() {
        let plan = Plan::new(args(&["--count", "3", "--threads", "8"])).unwrap();
        assert_eq!(plan.threads, 3);
    }

    #[test]
    fn rooms_and_room_size_make_the_count_and_fill_rooms_in_blocks() {
        let plan = Plan::new(args(&["--rooms", "3", "--room-size", "2"])).unwrap();
        assert_eq!(plan.count, 6);
        assert_eq!(plan.room_count(), 3);
        let rooms: Vec<u32> = (0..6).map(|i| plan.room_of(i)).collect();
        assert_eq!(rooms, [0, 0, 1, 1, 2, 2]);
        assert_eq!(plan.room_name(2).as_deref(), Some("bots-2"));
        assert_eq!(plan.url_of(1), "ws://127.0.0.1:7000/ws/bots-1");
        assert_eq!((0..3).map(|r| plan.bots_in(r)).sum::<u32>(), 6);

        // --rooms alone splits --count as evenly as contiguous blocks allow.
        let plan = Plan::new(args(&["--rooms", "3", "--count", "10"])).unwrap();
        let rooms: Vec<u32> = (0..10).map(|i| plan.room_of(i)).collect();
        assert_eq!(rooms, [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]);
        let sizes: Vec<u32> = (0..3).map(|r| plan.bots_in(r)).collect();
        assert_eq!(sizes, [4, 3, 3]);

        // --room-size alone: ceil(count / size) rooms, the last one holding the rest.
        let plan = Plan::new(args(&[
            "--room-size",
            "4",
            "--count",
            "10",
            "--room-prefix",
            "m_",
        ]))
        .unwrap();
        assert_eq!(plan.room_count(), 3);
        let sizes: Vec<u32> = (0..3).map(|r| plan.bots_in(r)).collect();
        assert_eq!(sizes, [4, 4, 2]);
        assert_eq!(plan.room_of(9), 2);
        assert_eq!(plan.room_name(0).as_deref(), Some("m_0"));

        // A count that agrees with the product is fine; the query string stays at the end.
        let mut argv = vec!["bots", "--url", "ws://127.0.0.1:7000/ws/?type=arena"];
        argv.extend(["--rooms", "250", "--room-size", "4", "--count", "1000"]);
        let plan = Plan::new(Args::try_parse_from(argv).unwrap()).unwrap();
        assert_eq!(
            plan.url_of(249),
            "ws://127.0.0.1:7000/ws/bots-249?type=arena"
        );
        assert_eq!(plan.bots_in(249), 4);
        // Every bot is in a room whose size says so.
        for room in 0..250 {
            let members = (0..1000).filter(|i| plan.room_of(*i) == room).count();
            assert_eq!(members as u32, plan.bots_in(room), "room {room}");
        }
    }

    #[test]
    fn a_url_naming_a_room_is_checked_without_rooms_and_refused_with_them() {
        let plan = Plan::new(
            Args::try_parse_from(["bots", "--url", "ws://127.0.0.1:7000/ws/duel-7"]).unwrap(),
        )
        .unwrap();
        assert_eq!(plan.room_name(0).as_deref(), Some("duel-7"));
        assert_eq!(plan.url_of(0), "ws://127.0.0.1:7000/ws/duel-7");
        let plan = Plan::new(args(&[])).unwrap();
        assert_eq!(
            plan.room_name(0),
            None,
            "/ws is the default room, whatever its name"
        );
        let err = Plan::new(
            Args::try_parse_from([
                "bots",
                "--url",
                "ws://127.0.0.1:7000/ws/duel-7",
                "--rooms",
                "2",
            ])
            .unwrap(),
        )
        .unwrap_err();
        assert!(err.contains("--url") && err.contains("duel-7"), "{err}");
    }

    #[test]
    fn matchmaking_needs_a_room_or_a_type_to_ask_for() {
        let plan = Plan::new(args(&[
            "--matchmake",
            "http://127.0.0.1:9101",
            "--rooms",
            "2",
            "--room-size",
            "3",
        ]))
        .unwrap();
        let m = plan.matchmaker.as_ref().unwrap();
        assert_eq!(m.url.as_str(), "http://127.0.0.1:9101/matchmake");
        assert_eq!(m.room_type, None);
        assert!(!plan.placed_rooms());
        assert_eq!(plan.room_name(1).as_deref(), Some("bots-1"));
        assert!(plan.target_label().contains("matchmaking"));

        let plan = Plan::new(args(&[
            "--matchmake",
            "http://127.0.0.1:9101",
            "--matchmake-type",
            "arena",
            "--count",
            "5",
        ]))
        .unwrap();
        assert!(plan.placed_rooms());
        assert_eq!(plan.matchmaker.unwrap().room_type.as_deref(), Some("arena"));

        let err = Plan::new(args(&["--matchmake", "http://127.0.0.1:9101"])).unwrap_err();
        assert!(err.contains("--matchmake-type"), "{err}");
        let err = Plan::new(args(&["--matchmake-type", "arena"])).unwrap_err();
        assert!(err.contains("needs --matchmake"), "{err}");
        let err = Plan::new(args(&[
            "--matchmake",
            "http://127.0.0.1:1",
            "--rooms",
            "1",
            "--matchmake-timeout-ms",
            "0",
        ]))
        .unwrap_err();
        assert!(err.contains("--matchmake-timeout-ms"), "{err}");
    }

    #[test]
    fn contradictory_room_flags_are_refused_with_the_flags_named() {
        let err =
            Plan::new(args(&["--rooms", "3", "--room-size", "2", "--count", "7"])).unwrap_err();
        assert!(
            err.contains("--count 7") && err.contains("--rooms 3"),
            "{err}"
        );
        let err = Plan::new(args(&["--rooms", "10", "--count", "5"])).unwrap_err();
        assert!(err.contains("--rooms 10"), "{err}");
        let err = Plan::new(args(&["--rooms", "1000", "--room-size", "1000"])).unwrap_err();
        assert!(err.contains("100000"), "{err}");
        let err = Plan::new(args(&["--rooms", "2", "--room-prefix", "bad name "])).unwrap_err();
        assert!(err.contains("--room-prefix"), "{err}");
        let long = "x".repeat(64);
        let err = Plan::new(args(&["--rooms", "2", "--room-prefix", &long])).unwrap_err();
        assert!(err.contains("64"), "{err}");
        assert!(Args::try_parse_from(["bots", "--rooms", "0"]).is_err());
        assert!(Args::try_parse_from(["bots", "--room-size", "0"]).is_err());
        // The prefix may use the whole name but the number.
        let ok = "x".repeat(63);
        assert!(Plan::new(args(&[
            "--rooms",
            "10",
            "--count",
            "10",
            "--room-prefix",
            &ok
        ]))
        .is_ok());
    }
}
