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
pub use server::{Command, Handle, Server};
