//! The main thread of a run: deals the bots out to the workers with their ramp-up times, adds up what the
//! workers report, calls back once a second with the live figures, stops the run at `--duration` (or when
//! told, or when every bot is down) and builds the [`Report`].

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver};

use crate::config::Plan;
use crate::game::{Arena, BotGame};
use crate::matchmake::PlacedRooms;
use crate::mix::Behaviour;
use crate::report::{EndedBy, Report, Resumes};
use crate::stats::{BotError, ProcessStats, RoomStats, Stats};
use crate::worker::{self, Event, WorkerHandle, WorkerReport};

/// How often the live figures are computed.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// Worker messages the channel holds per worker before workers keep counting locally instead.
const EVENTS_QUEUED_PER_WORKER: usize = 16;
/// Beyond `--close-timeout-ms`, how long the main thread waits for workers' last reports.
const FINISH_GRACE: Duration = Duration::from_secs(5);
/// Error details the report keeps (all are counted).
pub const ERRORS_KEPT_MAX: usize = 20;

/// The live figures, once a second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    pub elapsed: Duration,
    pub bots: usize,
    pub connected: u64,
    /// Updates received over the last interval, all bots together, per second.
    pub updates_per_s: f64,
    /// The same per connected bot.
    pub updates_per_s_per_bot: f64,
    /// Input -> acknowledgement p99 over the last interval, slow bots left out, in ms.
    pub rtt_p99_ms: f64,
    /// Checksum mismatches, protocol errors, unexpected disconnects and bots that gave up, so far.
    pub errors: u64,
    /// Bots skipped input slots over the last interval: their threads fell behind, so the figures
    /// measure the bots machine as well as the server.
    pub bots_overloaded: bool,
    /// Resumes so far: asked, honoured, refused, and the first update after an honoured one.
    pub resumes: Resumes,
    /// `--matchmake`: requests so far, and those that placed a bot.
    pub matchmake_requests: u64,
    pub matchmake_placed: u64,
    /// Matchmaking latency p99 over the last interval, in ms (0 without requests).
    pub matchmake_p99_ms: f64,
}

/// Runs the swarm. `stop` ends the run early (Ctrl-C); `on_progress` gets the live figures once a second;
/// `on_error` gets each correctness error as it is reported (details of the first few per worker and
/// interval; all are counted).
pub fn run(
    plan: Plan,
    stop: &Receiver<()>,
    on_progress: impl FnMut(&Progress),
    on_error: impl FnMut(&BotError),
) -> io::Result<Report> {
    run_with::<Arena>(plan, stop, on_progress, on_error)
}

/// [`run`] for game `G`: the same swarm, checks and report, with `G`'s state and inputs (see
/// [`BotGame`]).
pub fn run_with<G: BotGame>(
    plan: Plan,
    stop: &Receiver<()>,
    mut on_progress: impl FnMut(&Progress),
    mut on_error: impl FnMut(&BotError),
) -> io::Result<Report> {
    let plan = Arc::new(plan);
    let count = plan.count as usize;
    let behaviours = plan.args.mix.assign(count);
    let start = Instant::now();
    let (tx, events) = crossbeam_channel::bounded(EVENTS_QUEUED_PER_WORKER * plan.threads);
    let placed_rooms = Arc::new(PlacedRooms::default());
    let mut workers: Vec<WorkerHandle> = Vec::with_capacity(plan.threads);
    for w in 0..plan.threads {
        // Round-robin, so every worker ramps up at the same pace and gets the same mix.
        let bots = (w..count)
            .step_by(plan.threads)
            .map(|i| {
                (
                    i,
                    behaviours[i],
                    plan.room_of(i),
                    start + plan.ramp_offset(i),
                )
            })
            .collect();
        match worker::spawn::<G>(w, plan.clone(), placed_rooms.clone(), bots, tx.clone()) {
            Ok(handle) => workers.push(handle),
            Err(e) => {
                workers.iter().for_each(WorkerHandle::stop);
                return Err(e);
            }
        }
    }
    drop(tx);

    let mut tally = Tally::new(plan.threads, behaviours);
    let deadline = start + plan.args.duration;
    let ramp_end = start + plan.ramp_up();
    let mut next_progress = start + PROGRESS_INTERVAL;
    let mut stop = stop.clone();
    let ended_by = loop {
        let wake = next_progress.min(deadline);
        select! {
            recv(events) -> event => match event {
                Ok(event) => tally.absorb(event, &mut on_error),
                Err(_) => break EndedBy::AllBotsDown,
            },
            recv(stop) -> signal => match signal {
                Ok(()) => break EndedBy::Interrupted,
                // Nobody can ask to stop any more: only the duration ends the run.
                Err(_) => stop = crossbeam_channel::never(),
            },
            default(wake.saturating_duration_since(Instant::now())) => {}
        }
        let now = Instant::now();
        if now >= next_progress {
            on_progress(&tally.progress(now - start, count));
            next_progress += PROGRESS_INTERVAL;
        }
        if now >= deadline {
            break EndedBy::Duration;
        }
        if now > ramp_end && tally.all_down() {
            break EndedBy::AllBotsDown;
        }
    };
    let elapsed = start.elapsed();

    workers.iter().for_each(WorkerHandle::stop);
    let finish_by = Instant::now() + plan.close_timeout() + FINISH_GRACE;
    while !tally.all_done() {
        match events.recv_deadline(finish_by) {
            Ok(event) => tally.absorb(event, &mut on_error),
            Err(_) => break,
        }
    }
    if tally.all_done() {
        workers.into_iter().for_each(WorkerHandle::join);
    }
    let mut summary = tally.summary(elapsed, ended_by);
    summary.placed_rooms = placed_rooms.names();
    Ok(Report::new(&plan, &tally.total, &summary))
}

/// What the main thread adds up from the workers' reports.
struct Tally {
    total: Stats,
    /// Counted since the last progress line.
    window: Stats,
    /// Per worker: bots connected now, bots active, whether it sent `Done`.
    gauges: Vec<(u64, usize, bool)>,
    peak_connected: u64,
    errors: Vec<String>,
    behaviours: Vec<Behaviour>,
    /// Per room, from the workers' last reports.
    rooms: BTreeMap<u32, RoomStats>,
    /// Per process, from the workers' last reports.
    processes: BTreeMap<String, ProcessStats>,
}

/// The run-level facts a [`Report`] needs beside the summed [`Stats`].
pub struct Summary {
    pub elapsed: Duration,
    pub ended_by: EndedBy,
    pub peak_connected: u64,
    pub behaviours: Vec<Behaviour>,
    pub errors: Vec<String>,
    /// Per room (by number), what its bots counted; a room whose bots' workers did not report in time
    /// is missing.
    pub rooms: BTreeMap<u32, RoomStats>,
    /// Per process the bots were placed on (`--matchmake`), what they counted there.
    pub processes: BTreeMap<String, ProcessStats>,
    /// The rooms the matchmaker chose, by room number (`--matchmake-type` without planned rooms).
    pub placed_rooms: Vec<String>,
}

impl Tally {
    fn new(threads: usize, behaviours: Vec<Behaviour>) -> Self {
        Tally {
            total: Stats::default(),
            window: Stats::default(),
            gauges: vec![(0, usize::MAX, false); threads],
            peak_connected: 0,
            errors: Vec::new(),
            behaviours,
            rooms: BTreeMap::new(),
            processes: BTreeMap::new(),
        }
    }

    fn absorb(&mut self, event: Event, on_error: &mut impl FnMut(&BotError)) {
        let (report, done) = match event {
            Event::Progress(report) => (report, false),
            Event::Done(report) => (report, true),
        };
        let WorkerReport {
            worker,
            stats,
            errors,
            connected,
            active,
            rooms,
            processes,
        } = report;
        for (room, stats) in rooms {
            self.rooms.entry(room).or_default().add(&stats);
        }
        for (process, stats) in processes {
            self.processes.entry(process).or_default().add(&stats);
        }
        self.total.add(&stats);
        self.window.add(&stats);
        for e in &errors {
            on_error(e);
            if self.errors.len() < ERRORS_KEPT_MAX {
                self.errors.push(e.to_string());
            }
        }
        self.gauges[worker] = (connected, active, done);
        let connected_now: u64 = self.gauges.iter().map(|g| g.0).sum();
        self.peak_connected = self.peak_connected.max(connected_now);
    }

    fn all_down(&self) -> bool {
        self.gauges.iter().all(|g| g.1 == 0)
    }

    fn all_done(&self) -> bool {
        self.gauges.iter().all(|g| g.2)
    }

    fn progress(&mut self, elapsed: Duration, bots: usize) -> Progress {
        let window = std::mem::take(&mut self.window);
        let all = window.sum(|_| true);
        let headline = window.sum(|b| !b.reads_slowly());
        let secs = PROGRESS_INTERVAL.as_secs_f64();
        let connected_s = all.connected_s();
        let t = self.total.sum(|_| true);
        Progress {
            elapsed,
            bots,
            connected: self.gauges.iter().map(|g| g.0).sum(),
            updates_per_s: all.updates as f64 / secs,
            updates_per_s_per_bot: if connected_s > 0.0 {
                all.updates as f64 / connected_s
            } else {
                0.0
            },
            rtt_p99_ms: headline.rtt.quantile_ms(0.99),
            errors: t.checksum_mismatches
                + t.protocol_errors
                + t.disconnects_unexpected
                + self.total.bots_gave_up,
            bots_overloaded: all.input_slots_skipped > 0,
            resumes: Resumes::of(&t),
            matchmake_requests: self.total.matchmake.requests,
            matchmake_placed: self.total.matchmake.placed,
            matchmake_p99_ms: window.matchmake.latency.quantile_ms(0.99),
        }
    }

    fn summary(&mut self, elapsed: Duration, ended_by: EndedBy) -> Summary {
        Summary {
            elapsed,
            ended_by,
            peak_connected: self.peak_connected,
            behaviours: self.behaviours.clone(),
            errors: self.errors.clone(),
            rooms: std::mem::take(&mut self.rooms),
            processes: std::mem::take(&mut self.processes),
            placed_rooms: Vec::new(),
        }
    }
}
