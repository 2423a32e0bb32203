//! What the benches run on: an arena with players that send inputs as the bots do, worlds with exactly `k`
//! changed entities, and in-memory connections driven the way `Server::send_updates` drives real ones.
//!
//! `MemConn::queue`, `fan_out`, `WriteList` and `flush` copy the per-connection logic of `Conn::queue`,
//! `Server::send_updates`, `Server::want_write` and `Server::flush_writes` (src/net/conn.rs, src/server/)
//! with the socket replaced by a bounded in-memory buffer: `Conn` owns a `mio::net::TcpStream`, so it
//! cannot be built around a sink. Keep them in step when those change.

use std::io::{self, Write};

use tickcast::net::conn::OutBuf;
use tickcast::sim::arena::{Arena, ArenaEntity, ArenaInput};
use tickcast::sim::{Game, Joining, PlayerId, Rng};
use tickcast::sync::{UpdateKind, Updates, World, WorldLimits};

use crate::alloc::{self, Allocs};

/// The default tick: 20 Hz.
pub const DT_S: f32 = 0.05;
/// The server's default `--checksum-every-ticks`.
pub const CHECKSUM_EVERY_TICKS: u64 = 20;
/// The server's default `--send-hwm-bytes`.
pub const SEND_HWM_BYTES: usize = 64 * 1024;
/// What the in-memory "kernel" takes per connection before it says `WouldBlock`; the server's default
/// `--tcp-notsent-lowat-bytes`.
pub const SINK_BYTES: usize = 16 * 1024;
/// Ticks of bot inputs generated up front and replayed, so the timed loop runs server code only.
const INPUT_TICKS: usize = 64;

/// A 1,000-entity world's first ticks, so every bench starts from a world that has been running.
const WARM_TICKS: u64 = 3;

/// The arena with joined players and wanderers, fed one input per player per tick as a bot does (every
/// 50 ms, a new random direction with probability 0.1).
pub struct ArenaFixture {
    pub world: World<ArenaEntity>,
    pub game: Arena,
    /// Joined players, by slot; a slot's player changes when it churns.
    players: Vec<PlayerId>,
    /// `inputs[t % INPUT_TICKS][slot]`: the direction slot `slot` sends at tick `t`.
    inputs: Vec<Vec<ArenaInput>>,
    /// Input sequence, shared by all players (each player's own sequence only has to increase).
    seq: u32,
    next_player: PlayerId,
}

impl ArenaFixture {
    pub fn new(players: usize, wanderers: usize) -> Self {
        let mut world = World::new(WorldLimits::default());
        let game = Arena::new(&mut world, wanderers, 1);
        let mut fixture = ArenaFixture {
            world,
            game,
            players: Vec::with_capacity(players),
            inputs: bot_inputs(players, 7),
            seq: 0,
            next_player: 1,
        };
        for _ in 0..players {
            let id = fixture.join();
            fixture.players.push(id);
        }
        for _ in 0..WARM_TICKS {
            fixture.tick();
        }
        fixture
    }

    fn join(&mut self) -> PlayerId {
        let id = self.next_player;
        self.next_player += 1;
        self.game
            .join(
                &mut self.world,
                id,
                Joining {
                    name: "bot",
                    account: None,
                },
            )
            .expect("the bench world has room");
        id
    }

    /// One tick as the loop runs it: the inputs that arrived since the last tick, the step, the tick mark.
    pub fn tick(&mut self) {
        let tick = self.world.tick() + 1;
        self.seq += 1;
        let inputs = &self.inputs[tick as usize % INPUT_TICKS];
        for (player, input) in self.players.iter().zip(inputs) {
            self.game.input(*player, self.seq, *input);
        }
        self.game
            .step(&mut self.world, tick, DT_S, &mut Default::default());
        self.world.complete_tick();
    }

    /// Replaces `n` players (round robin) by new ones, as reconnecting bots do: despawns and spawns.
    pub fn churn(&mut self, n: usize) {
        for _ in 0..n {
            let slot = self.next_player as usize % self.players.len();
            self.game.leave(&mut self.world, self.players[slot]);
            self.players[slot] = self.join();
        }
    }
}

fn bot_inputs(players: usize, seed: u64) -> Vec<Vec<ArenaInput>> {
    let mut rng = Rng::new(seed);
    let direction = |rng: &mut Rng| {
        let angle = rng.next_f32() * std::f32::consts::TAU;
        ArenaInput {
            dx: (angle.cos() * 127.0) as i8,
            dy: (angle.sin() * 127.0) as i8,
        }
    };
    let mut current: Vec<ArenaInput> = (0..players).map(|_| direction(&mut rng)).collect();
    (0..INPUT_TICKS)
        .map(|_| {
            for input in current.iter_mut() {
                if rng.below(10) == 0 {
                    *input = direction(&mut rng);
                }
            }
            current.clone()
        })
        .collect()
}

/// A world of `n` entities of which exactly `k` changed in the last tick (spread evenly over the ids), each
/// by one tick of player movement. The tick's delta is then `for_baseline(Some(tick - 1))`.
pub fn world_with_changes(n: usize, k: usize) -> World<ArenaEntity> {
    assert!(k <= n && n > 0);
    let mut world = World::new(WorldLimits::default());
    let mut rng = Rng::new(3);
    for _ in 0..n {
        let state = ArenaEntity {
            x: rng.below(8000) as u16,
            y: rng.below(8000) as u16,
            seq: 1,
        };
        world.spawn(state).expect("room");
    }
    for _ in 0..WARM_TICKS {
        world.complete_tick();
    }
    for i in 0..k {
        let id = (i * n / k) as u32;
        let mut state = *world.get(id).expect("alive");
        state.x = state.x.wrapping_add(rng.below(81) as u16).wrapping_sub(40);
        state.y = state.y.wrapping_add(rng.below(81) as u16).wrapping_sub(40);
        state.seq += 1;
        world.set(id, state);
    }
    world.complete_tick();
    world
}

/// The in-memory stand-in for a connected socket's kernel send buffer: it takes bytes until
/// [`SINK_BYTES`] are held, then says `WouldBlock` until its reader drains it.
pub struct MemSock {
    buf: Vec<u8>,
    /// A reader that keeps up drains the buffer whenever a write would not fit; a slow one is drained only
    /// by [`MemSock::drain`].
    keeps_up: bool,
    /// Whether a write copies the bytes (as the kernel does); a discarding socket only takes them, to
    /// isolate the server's own per-connection work from the copy.
    copies: bool,
}

impl MemSock {
    pub fn new(keeps_up: bool) -> Self {
        MemSock {
            buf: Vec::with_capacity(SINK_BYTES),
            keeps_up,
            copies: true,
        }
    }

    /// A socket whose reader keeps up and that takes every byte without copying it.
    pub fn discarding() -> Self {
        MemSock {
            buf: Vec::new(),
            keeps_up: true,
            copies: false,
        }
    }

    /// The reader takes everything.
    pub fn drain(&mut self) {
        self.buf.clear();
    }
}

impl Write for MemSock {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if !self.copies {
            return Ok(bytes.len());
        }
        if self.keeps_up && self.buf.len() + bytes.len() > SINK_BYTES {
            self.buf.clear();
        }
        let n = bytes.len().min(SINK_BYTES - self.buf.len());
        if n == 0 && !bytes.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.buf.extend_from_slice(&bytes[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The parts of a `Conn` and its `WsState` that the update path touches.
pub struct MemConn {
    pub baseline: Option<u64>,
    pub out: OutBuf,
    pub sock: MemSock,
    on_write_list: bool,
}

impl MemConn {
    pub fn new(keeps_up: bool) -> Self {
        Self::with_sock(MemSock::new(keeps_up))
    }

    pub fn with_sock(sock: MemSock) -> Self {
        let mut out = OutBuf::default();
        // As after the upgrade: everything queued from here on is whole WebSocket frames.
        out.frames_begin_here();
        MemConn {
            baseline: None,
            out,
            sock,
            on_write_list: false,
        }
    }

    /// `Conn::queue`, the server's own code over an in-memory socket.
    pub fn queue(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.out.queue(&mut self.sock, bytes)
    }
}

/// What one or more update phases did, as the server's metrics count it.
#[derive(Debug, Default, Clone, Copy)]
pub struct FanOutStats {
    pub delta: u64,
    pub coalesced: u64,
    pub full: u64,
    pub skipped: u64,
    pub bytes_written: u64,
    /// Times pushing onto the write list grew it (an allocation each).
    pub write_list_grows: u64,
}

/// The loop's list of connections with bytes left to write, kept as `Server` keeps it: taken (and so
/// dropped with its capacity) by each write step, as `Server::flush_writes` does.
#[derive(Default)]
pub struct WriteList(Vec<usize>);

impl WriteList {
    /// `Server::want_write`.
    fn want_write(&mut self, conns: &mut [MemConn], k: usize, stats: &mut FanOutStats) {
        let conn = &mut conns[k];
        if !conn.on_write_list {
            conn.on_write_list = true;
            let capacity = self.0.capacity();
            self.0.push(k);
            if self.0.capacity() != capacity {
                stats.write_list_grows += 1;
            }
        }
    }
}

/// The per-connection loop of `Server::send_updates` after `updates.begin`: skip connections that hold
/// the tick or sit above the high-water mark, otherwise queue the frame for their baseline.
pub fn fan_out(
    updates: &mut Updates,
    world: &World<ArenaEntity>,
    conns: &mut [MemConn],
    write_list: &mut WriteList,
    stats: &mut FanOutStats,
) {
    let tick = world.tick();
    for k in 0..conns.len() {
        let conn = &mut conns[k];
        if conn.baseline == Some(tick) {
            continue;
        }
        if conn.out.pending() > SEND_HWM_BYTES {
            stats.skipped += 1;
            continue;
        }
        let (range, kind) = updates.for_baseline(world, conn.baseline);
        match kind {
            UpdateKind::Delta => stats.delta += 1,
            UpdateKind::Coalesced => stats.coalesced += 1,
            UpdateKind::Full => stats.full += 1,
        }
        conn.baseline = Some(tick);
        let n = conn
            .queue(updates.bytes(range))
            .expect("an in-memory socket does not fail");
        stats.bytes_written += n as u64;
        if !conn.out.is_empty() {
            write_list.want_write(conns, k, stats);
        }
    }
}

/// `Server::flush_writes` without the poll registration: write what each listed connection has queued.
pub fn flush(conns: &mut [MemConn], write_list: &mut WriteList, stats: &mut FanOutStats) {
    for k in std::mem::take(&mut write_list.0) {
        let conn = &mut conns[k];
        conn.on_write_list = false;
        let n = conn
            .out
            .write_to(&mut conn.sock)
            .expect("an in-memory socket does not fail");
        stats.bytes_written += n as u64;
    }
}

/// Allocations of a [`TickLoop`], by phase of the tick.
#[derive(Debug, Default, Clone, Copy)]
pub struct PhaseAllocs {
    /// The turns between ticks: readers draining, the writable events they cause, the writes.
    pub readers: Allocs,
    /// Inputs, `Game::step`, `World::complete_tick`.
    pub step: Allocs,
    /// `Updates::begin` (the checksum, on checksum ticks).
    pub begin: Allocs,
    /// The per-connection loop: `for_baseline` (encoding) and `queue`.
    pub fan_out: Allocs,
    /// The tick turn's write step.
    pub flush: Allocs,
}

fn add(total: &mut Allocs, more: Allocs) {
    total.count += more.count;
    total.bytes += more.bytes;
}

/// How the connections' readers keep up.
#[derive(Debug, Clone, Copy)]
pub struct Readers {
    /// Every this-many-th connection is slow (0: none, 1: all); the others drain whatever they are sent.
    pub slow_one_in: usize,
    /// A slow reader drains its [`SINK_BYTES`] only on ticks that are multiples of this.
    pub every_ticks: u64,
    /// ... and then this many times, each followed by a loop turn that writes (a writable event).
    pub drains: u32,
}

impl Readers {
    pub const KEEP_UP: Readers = Readers {
        slow_one_in: 0,
        every_ticks: 1,
        drains: 1,
    };
}

/// A whole steady-state tick of the server's hot path, the readers paced as configured: run the game,
/// build the update frames once, queue them to every connection, write what is pending.
pub struct TickLoop {
    pub arena: ArenaFixture,
    pub updates: Updates,
    pub conns: Vec<MemConn>,
    write_list: WriteList,
    pub stats: FanOutStats,
    pub allocs: PhaseAllocs,
    readers: Readers,
}

impl TickLoop {
    /// `players` players and `wanderers`, `conns` connections read as `readers` says. Runs `warm_ticks`
    /// ticks first, so buffers reach their steady size.
    pub fn new(
        players: usize,
        wanderers: usize,
        conns: usize,
        readers: Readers,
        warm_ticks: u64,
    ) -> Self {
        let slow_one_in = readers.slow_one_in;
        let conns = (0..conns)
            .map(|i| MemConn::new(slow_one_in == 0 || i % slow_one_in != 0))
            .collect();
        let mut tick_loop = TickLoop {
            arena: ArenaFixture::new(players, wanderers),
            updates: Updates::default(),
            conns,
            write_list: WriteList::default(),
            stats: FanOutStats::default(),
            allocs: PhaseAllocs::default(),
            readers: Readers {
                every_ticks: readers.every_ticks.max(1),
                ..readers
            },
        };
        for _ in 0..warm_ticks {
            tick_loop.tick();
        }
        tick_loop.stats = FanOutStats::default();
        tick_loop.allocs = PhaseAllocs::default();
        tick_loop
    }

    pub fn entities(&self) -> usize {
        self.arena.world.len()
    }

    /// One loop turn with a tick: slow readers drain (their writable events), step, update phase (with a
    /// checksum every [`CHECKSUM_EVERY_TICKS`]), write.
    pub fn tick(&mut self) -> u64 {
        let ((), allocs) = alloc::count(|| self.readers());
        add(&mut self.allocs.readers, allocs);
        let ((), allocs) = alloc::count(|| self.arena.tick());
        add(&mut self.allocs.step, allocs);
        let world = &self.arena.world;
        let tick = world.tick();
        let ((), allocs) = alloc::count(|| {
            self.updates.begin(world, tick % CHECKSUM_EVERY_TICKS == 0);
        });
        add(&mut self.allocs.begin, allocs);
        let ((), allocs) = alloc::count(|| {
            fan_out(
                &mut self.updates,
                world,
                &mut self.conns,
                &mut self.write_list,
                &mut self.stats,
            );
        });
        add(&mut self.allocs.fan_out, allocs);
        let ((), allocs) = alloc::count(|| {
            flush(&mut self.conns, &mut self.write_list, &mut self.stats);
        });
        add(&mut self.allocs.flush, allocs);
        tick
    }

    /// The loop turns between two ticks: slow readers drain, the writable events put their connections on
    /// the write list, the write step writes.
    fn readers(&mut self) {
        let next_tick = self.arena.world.tick() + 1;
        if next_tick % self.readers.every_ticks != 0 {
            return;
        }
        for _ in 0..self.readers.drains {
            for k in 0..self.conns.len() {
                let conn = &mut self.conns[k];
                if conn.sock.keeps_up {
                    continue;
                }
                conn.sock.drain();
                if !conn.out.is_empty() {
                    self.write_list
                        .want_write(&mut self.conns, k, &mut self.stats);
                }
            }
            flush(&mut self.conns, &mut self.write_list, &mut self.stats);
        }
    }
}
