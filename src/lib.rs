//! tickcast: an authoritative multiplayer game backend. Game clients connect over binary WebSockets; one
//! single-threaded mio loop owns every socket, a fixed-tick simulation and the clock, and each tick sends
//! each client the changes since what it already has.
//!
//! # Layout
//!
//! The modules follow the path a byte takes:
//!
//! - [`net`]: sockets, HTTP on the same port, WebSocket framing (with [`server`], the only code that
//!   touches sockets);
//! - [`proto`]: wire messages and their codec (the only code that knows the byte format; no I/O);
//! - [`sim`]: the [`sim::Game`] trait and the built-in arena (no I/O, no clock);
//! - [`sync`]: the replicated world, change ticks, shared and coalesced deltas, the client mirror;
//! - [`server`]: the loop that wires them together, in one visible turn order;
//! - [`clock`], [`config`], [`metrics`]: time, settings and counters, owned by the loop;
//! - [`ticket`]: the authentication ticket format (HMAC-signed, no I/O), checked by the loop;
//! - [`cluster`], [`backplane`], [`agones`]: helper threads for Redis and the Agones SDK sidecar, reached
//!   from the loop only through bounded channels and atomics.
//! - [`logs`]: the bound on what the loop logs (it only emits `tracing` events; the binary installs the
//!   subscriber).
//!
//! `docs/ARCHITECTURE.md` has the bird's-eye view and the invariants; `docs/PROTOCOL.md` the bytes.
//!
//! # Running a server from code
//!
//! A [`Config`] is a plain struct: [`Config::default()`] has the flags' defaults (it reads no flag, no
//! `TICKCAST_*` variable and no file; those are the binary's, [`config::sources`]). Change what you
//! need, bind, run:
//!
//! ```
//! use tickcast::sim::arena::ArenaSettings;
//! use tickcast::{Config, Server};
//!
//! let cfg = Config {
//!     listen: "127.0.0.1:0".parse().unwrap(),
//!     tick_hz: 30,
//!     ..Config::default()
//! };
//! let mut server = Server::bind(cfg, ArenaSettings::default().room_types()).unwrap();
//! println!("listening on {}", server.local_addr());
//! // Another thread (a signal handler, say) drains it through its handle; here, at once.
//! server.handle().shutdown();
//! server.run().unwrap();
//! ```

pub mod agones;
pub mod assets;
pub mod backplane;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod logs;
pub mod metrics;
pub mod net;
pub mod proto;
pub mod server;
pub mod sim;
pub mod sync;
pub mod ticket;

pub use config::Config;

/// The crate's version (`Cargo.toml`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit this was built from, 12 hex digits with `-dirty` when the tree had changes, or
/// `unknown` when built without git (`build.rs`).
pub const COMMIT: &str = env!("TICKCAST_GIT_COMMIT");
/// What `tickcast --version` prints after the name: `0.1.0 (commit 0123456789ab)`.
pub const VERSION_LINE: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("TICKCAST_GIT_COMMIT"),
    ")"
);
pub use server::{Command, Handle, Server};
