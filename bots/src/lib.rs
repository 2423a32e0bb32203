//! tickcast's bot swarm: thousands of real WebSocket players from one command, each checking that its
//! copy of the world matches the server's, and a report of what they measured. `docs/LOAD-TESTING.md` says
//! how to run it and how to read the figures.
//!
//! # Layout
//!
//! The main thread plans the run and adds up the figures; a few worker threads each run one mio loop over
//! many bots (never a thread per bot):
//!
//! - [`config`]: the flags and the validated [`config::Plan`];
//! - [`game`]: what the bots know of the game they play ([`BotGame`]; the arena by default);
//! - [`mix`]: the behaviours (`wander`, `idle`, `slow`, `flapper`, `spectator`, `rejoiner`) and how a run
//!   mixes them;
//! - [`swarm`]: the main thread: spawns the workers, ramps up, adds up, stops, builds the report;
//! - [`worker`]: one thread's mio loop over its bots, in one visible turn order;
//! - [`bot`]: one bot's connection life and behaviour, driven by socket readiness and timers;
//! - [`stream`]: the bot's non-blocking socket, plain or TLS, with a byte counter and the slow bots' read
//!   cap ([`bucket`]), and the one HTTP exchange of a matchmaking request;
//! - [`tls`]: `wss://` and `https://`: what the bots trust (`--ca-file`, the system's roots,
//!   `--insecure`) and the names certificates are checked for;
//! - [`matchmake`]: `--matchmake`: the `POST /matchmake` a bot makes before connecting, its answer and
//!   where its `connect` URL points (no I/O);
//! - [`view`]: decodes server messages into the bot's mirror, checks every checksum and follows resumes
//!   (no I/O);
//! - [`acks`], [`schedule`]: input -> acknowledgement latency and update lateness, measured without
//!   coordinated omission;
//! - [`backoff`]: reconnect delays with jitter, bounded in attempts;
//! - [`stats`], [`report`]: what is counted, and the table and JSON it ends up in.
//!
//! The bots speak the protocol of `docs/PROTOCOL.md` through `tickcast`'s own codec and mirror. By
//! default ([`run`], the `bots` binary) they play the arena, with its entity and input types: they load
//! any tickcast server running the arena (or a game with the arena's types), at the URL given. For
//! another game, [`game`]: implement [`BotGame`] (its entity state, its ack, its inputs) and call
//! [`run_with`]; the swarm, the checks and the report are the same.

pub mod acks;
pub mod backoff;
pub mod bot;
pub mod bucket;
pub mod config;
pub mod game;
pub mod matchmake;
pub mod mix;
pub mod report;
pub mod schedule;
pub mod stats;
pub mod stream;
pub mod swarm;
pub mod tls;
pub mod view;
pub mod worker;

pub use config::{Args, Plan};
pub use game::{Arena, BotGame};
pub use report::Report;
pub use swarm::{run, run_with, Progress};
