//! A worker thread: one mio loop over many bots. It owns its `Poll`, its bots (indexed by `Token`) and a
//! timer heap, and talks to the main thread only through channels: [`Command`]s in (with a `mio::Waker`),
//! [`Event`]s out.
//!
//! Each turn, in this order:
//!
//! 1. **poll** for socket events, sleeping at most until the next timer or report is due;
//! 2. **commands**: `Stop` makes every bot close cleanly;
//! 3. **sockets**: each ready bot matchmakes, connects, upgrades, reads (a bounded number of messages)
//!    or flushes;
//! 4. **rereads**: bots that hit their per-turn read cap last turn read again;
//! 5. **timers**: due connects (or matchmaking requests), inputs, flaps, slow-read refills and timeouts
//!    (a bounded number per turn);
//! 6. **report**: every [`REPORT_INTERVAL`], what was counted goes to the main thread (an overloaded
//!    worker also checks between bots, so its reports keep coming however long its turns get).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::{Events, Poll, Token, Waker};

use crate::bot::{Bot, Ctx};
use crate::config::Plan;
use crate::game::BotGame;
use crate::matchmake::PlacedRooms;
use crate::mix::Behaviour;
use crate::stats::{BotError, OpenGauge, ProcessStats, Processes, RoomStats, Stats};

/// How often a worker sends what it counted to the main thread.
pub const REPORT_INTERVAL: Duration = Duration::from_millis(250);
/// Socket events taken per poll; more wait for the next turn.
const EVENTS_MAX: usize = 1024;
/// Timers fired per turn, so a burst of due timers cannot starve the sockets.
const TIMERS_PER_TURN_MAX: usize = 4096;
/// Error details kept per report; the counts in [`Stats`] are never dropped.
const ERRORS_PER_REPORT_MAX: usize = 32;
/// Bot calls between two looks at the clock for a due report, so an overloaded worker whose turns take
/// seconds still reports on time.
const CALLS_PER_CLOCK_CHECK: usize = 64;
/// The waker's token; bots use tokens `0..bots`.
const WAKER: Token = Token(usize::MAX);

/// What the main thread can ask of a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// The run is over: close every bot cleanly, then report `Done`.
    Stop,
}

/// What a worker tells the main thread.
#[derive(Debug)]
pub enum Event {
    /// What was counted since the last message, and the gauges now.
    Progress(WorkerReport),
    /// The last message: every bot of the worker is down.
    Done(WorkerReport),
}

#[derive(Debug)]
pub struct WorkerReport {
    pub worker: usize,
    /// Counted since the previous report (a fresh `Stats` starts after each).
    pub stats: Box<Stats>,
    /// Correctness errors since the previous report, at most `ERRORS_PER_REPORT_MAX` (32).
    pub errors: Vec<BotError>,
    /// Bots with a welcomed connection now.
    pub connected: u64,
    /// Bots that have not given up, retired or finished.
    pub active: usize,
    /// What the bots of each room counted over the whole run (by room number); only in `Done`.
    pub rooms: BTreeMap<u32, RoomStats>,
    /// What the bots placed on each process counted over the whole run (`--matchmake`); only in `Done`.
    pub processes: BTreeMap<String, ProcessStats>,
}

/// The main thread's side of a worker.
pub struct WorkerHandle {
    commands: Sender<Command>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

impl WorkerHandle {
    pub fn stop(&self) {
        // A worker that already ended needs no telling.
        if self.commands.send(Command::Stop).is_ok() {
            let _ = self.waker.wake();
        }
    }

    pub fn join(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One bot to run: its number in the run, its behaviour, its room and when it first connects.
pub type BotSpec = (usize, Behaviour, u32, Instant);

/// Starts worker `id` with its bots of game `G`; `placed_rooms` numbers the rooms the matchmaker chooses,
/// for every worker of the run.
pub fn spawn<G: BotGame>(
    id: usize,
    plan: Arc<Plan>,
    placed_rooms: Arc<PlacedRooms>,
    bots: Vec<BotSpec>,
    events: Sender<Event>,
) -> io::Result<WorkerHandle> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let (commands_tx, commands) = crossbeam_channel::bounded(4);
    let thread = std::thread::Builder::new()
        .name(format!("bots-{id}"))
        .spawn(move || {
            let now = Instant::now();
            let seed = plan.args.seed;
            let worker = Worker::<G> {
                id,
                poll,
                bots: bots
                    .into_iter()
                    .map(|(n, behaviour, room, at)| Bot::<G>::new(n, behaviour, room, at, seed))
                    .collect(),
                rooms: BTreeMap::new(),
                processes: Processes::default(),
                placed_rooms,
                timers: BinaryHeap::new(),
                rereads: Vec::new(),
                stats: Stats::default(),
                open: OpenGauge::new(now),
                errors: Vec::new(),
                events,
                commands,
                next_report: now + REPORT_INTERVAL,
                stop_deadline: None,
                plan,
            };
            worker.run();
        })?;
    Ok(WorkerHandle {
        commands: commands_tx,
        waker,
        thread: Some(thread),
    })
}

struct Worker<G: BotGame> {
    id: usize,
    poll: Poll,
    plan: Arc<Plan>,
    bots: Vec<Bot<G>>,
    /// `(when, bot)`; an entry is live only while it equals the bot's `armed`, stale ones are skipped. At
    /// most a few entries per bot: one is pushed only when a bot's earliest deadline changes.
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Bots that stopped at their read cap, to read again next turn.
    rereads: Vec<usize>,
    /// Counted since the last report.
    stats: Stats,
    /// Per room its bots are in, counted over the whole run (one entry per room, at most one per bot:
    /// about 2.4 KiB each), sent with `Done`.
    rooms: BTreeMap<u32, RoomStats>,
    /// The processes the bots were placed on, counted over the whole run, sent with `Done` (a few
    /// entries: one per process of the cluster).
    processes: Processes,
    placed_rooms: Arc<PlacedRooms>,
    open: OpenGauge,
    errors: Vec<BotError>,
    events: Sender<Event>,
    commands: Receiver<Command>,
    next_report: Instant,
    /// Set by `Stop`: when the bots' clean closes are given up on.
    stop_deadline: Option<Instant>,
}

impl<G: BotGame> Worker<G> {
    fn run(mut self) {
        let mut events = Events::with_capacity(EVENTS_MAX);
        for i in 0..self.bots.len() {
            self.rearm(i);
        }
        let mut timers_left_over = false;
        loop {
            // 1. poll
            let timeout = if timers_left_over || !self.rereads.is_empty() {
                Duration::ZERO
            } else {
                self.next_deadline()
                    .saturating_duration_since(Instant::now())
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    // The loop cannot go on; end the bots and report what was counted.
                    break;
                }
            }
            let now = Instant::now();

            // 2. commands
            self.take_commands(now);

            // 3. sockets
            for (n, event) in events.iter().enumerate() {
                let Token(i) = event.token();
                if i < self.bots.len() {
                    let (readable, writable) = (event.is_readable(), event.is_writable());
                    self.with_bot(i, now, |bot, ctx| bot.on_ready(ctx, readable, writable));
                }
                self.report_if_due(n);
            }

            // 4. rereads
            for (n, i) in std::mem::take(&mut self.rereads).into_iter().enumerate() {
                self.with_bot(i, now, |bot, ctx| bot.on_reread(ctx));
                self.report_if_due(n);
            }

            // 5. timers
            timers_left_over = self.fire_timers(now);

            // 6. report
            if now >= self.next_report {
                self.report(now);
            }
            if self.stopped(now) {
                break;
            }
        }
        self.finish(Instant::now());
    }

    fn next_deadline(&self) -> Instant {
        let mut at = self.next_report;
        if let Some(Reverse((timer, _))) = self.timers.peek() {
            at = at.min(*timer);
        }
        if let Some(deadline) = self.stop_deadline {
            at = at.min(deadline);
        }
        at
    }

    fn take_commands(&mut self, now: Instant) {
        let stop = match self.commands.try_recv() {
            Ok(Command::Stop) => true,
            // The main thread is gone: nobody will read a report, but close the bots cleanly anyway.
            Err(crossbeam_channel::TryRecvError::Disconnected) => true,
            Err(crossbeam_channel::TryRecvError::Empty) => false,
        };
        if stop && self.stop_deadline.is_none() {
            self.stop_deadline = Some(now + self.plan.close_timeout());
            for i in 0..self.bots.len() {
                self.with_bot(i, now, |bot, ctx| bot.stop(ctx));
            }
        }
    }

    /// Fires due timers; returns whether due ones were left for the next turn.
    fn fire_timers(&mut self, now: Instant) -> bool {
        for n in 0..TIMERS_PER_TURN_MAX {
            self.report_if_due(n);
            let Some(&Reverse((at, i))) = self.timers.peek() else {
                return false;
            };
            if at > now {
                return false;
            }
            self.timers.pop();
            if self.bots[i].armed != Some(at) {
                continue; // stale: the bot's deadline moved
            }
            self.bots[i].armed = None;
            self.with_bot(i, now, |bot, ctx| bot.on_timer(ctx));
        }
        true
    }

    /// Calls bot `i` with a context, then files its reread request and re-arms its timer.
    fn with_bot(&mut self, i: usize, now: Instant, f: impl FnOnce(&mut Bot<G>, &mut Ctx)) {
        let bot = &mut self.bots[i];
        let mut ctx = Ctx {
            now,
            registry: self.poll.registry(),
            token: Token(i),
            plan: &self.plan,
            stats: &mut self.stats,
            room: self.rooms.entry(bot.room).or_default(),
            open: &mut self.open,
            errors: &mut self.errors,
            processes: &mut self.processes,
            placed_rooms: &self.placed_rooms,
        };
        f(bot, &mut ctx);
        self.errors.truncate(ERRORS_PER_REPORT_MAX);
        if bot.take_reread() {
            self.rereads.push(i);
        }
        self.rearm(i);
    }

    fn rearm(&mut self, i: usize) {
        let bot = &mut self.bots[i];
        let want = bot.next_wake(&self.plan);
        if want != bot.armed {
            if let Some(at) = want {
                self.timers.push(Reverse((at, i)));
            }
            bot.armed = want;
        }
    }

    fn stopped(&self, now: Instant) -> bool {
        match self.stop_deadline {
            None => false,
            Some(deadline) => now >= deadline || self.bots.iter().all(Bot::<G>::is_done),
        }
    }

    fn snapshot(&mut self, now: Instant) -> WorkerReport {
        self.open.settle(now, &mut self.stats);
        WorkerReport {
            worker: self.id,
            stats: Box::new(std::mem::take(&mut self.stats)),
            errors: std::mem::take(&mut self.errors),
            connected: self.open.total(),
            active: self.bots.iter().filter(|b| !b.is_done()).count(),
            rooms: BTreeMap::new(),
            processes: BTreeMap::new(),
        }
    }

    /// Every [`CALLS_PER_CLOCK_CHECK`] bot calls within a turn, reports if one is due.
    fn report_if_due(&mut self, calls: usize) {
        if calls % CALLS_PER_CLOCK_CHECK == CALLS_PER_CLOCK_CHECK - 1 {
            let now = Instant::now();
            if now >= self.next_report {
                self.report(now);
            }
        }
    }

    /// Sends what was counted; when the main thread is behind, keeps counting into the same `Stats` and
    /// tries again next interval, so nothing is lost and nothing blocks the bots.
    fn report(&mut self, now: Instant) {
        self.next_report = now + REPORT_INTERVAL;
        let report = self.snapshot(now);
        if let Err(TrySendError::Full(Event::Progress(report))) =
            self.events.try_send(Event::Progress(report))
        {
            self.stats = *report.stats;
            self.errors = report.errors;
        }
    }

    /// Drops what did not close in time and sends the last report.
    fn finish(mut self, now: Instant) {
        for i in 0..self.bots.len() {
            if !self.bots[i].is_done() {
                self.with_bot(i, now, |bot, ctx| bot.abandon(ctx));
            }
        }
        let mut report = self.snapshot(now);
        report.rooms = std::mem::take(&mut self.rooms);
        report.processes = std::mem::take(&mut self.processes).into_map();
        // The main thread waits for this one; if it is gone there is no one to tell.
        let _ = self.events.send(Event::Done(report));
    }
}
