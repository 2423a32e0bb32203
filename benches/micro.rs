//! Criterion micro-benchmarks of the tick path, from the simulation step to the bytes handed to sockets.
//!
//! | group       | what one iteration is                                                              |
//! |-------------|------------------------------------------------------------------------------------|
//! | `step`      | bot inputs + `Game::step` + `World::complete_tick` of the arena, N entities        |
//! | `delta`     | `Updates::begin` + `for_baseline(Some(tick - 1))`, N entities of which k changed   |
//! | `coalesced` | the same from a baseline 20 ticks back (and 1 back, and a `Full`), with churn      |
//! | `fanout`    | one framed update queued to N in-memory connections (`Conn::queue`'s logic), with  |
//! |             | the copy a kernel makes (`conns`) and without it (`conns_no_copy`)                 |
//! | `tick`      | a whole steady-state tick: step, update phase, fan-out to 1,000 connections        |
//! | `proto`     | encode and decode of each wire message                                             |
//! | `kernel`    | one non-blocking loopback `send()` of a 4 / 8 / 32 KiB frame: the floor            |
//!
//! The binary counts heap allocations ([`alloc::Counting`]). Before the timed benches it runs 100
//! steady-state ticks and prints `allocations per tick: ...`; after each timed bench it prints the
//! allocations per iteration of the same routine.
//!
//! Run: `CARGO_TARGET_DIR=/work/target-bench cargo bench --bench micro -- --warm-up-time 1 --measurement-time 3`

#[path = "micro/alloc.rs"]
mod alloc;
#[path = "micro/fixtures.rs"]
mod fixtures;
#[path = "micro/kernel.rs"]
mod kernel;

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput};

use fixtures::{
    fan_out, world_with_changes, ArenaFixture, FanOutStats, MemConn, MemSock, Readers, TickLoop,
    WriteList,
};
use tickcast::proto::{self, ClientMsg, ServerMsg};
use tickcast::sim::arena::{ArenaDiff, ArenaEntity, ArenaInput};
use tickcast::sync::{UpdateKind, Updates};

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

/// Runs of a routine counted after its timed bench.
const ALLOC_COUNT_RUNS: u64 = 10;
/// Steady-state ticks counted by the allocation check.
const ALLOC_CHECK_TICKS: u64 = 100;
/// Ticks run before counting, so every buffer reached its steady size (covers two checksum ticks).
const ALLOC_WARM_TICKS: u64 = 45;

type Server = ServerMsg<ArenaEntity, ArenaDiff>;
type Client = ClientMsg<ArenaInput>;

/// Benches `routine` under `function/parameter`, then, if it ran, prints the allocations one run of it
/// makes once warm.
fn bench_counted<R>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    function: &str,
    parameter: impl std::fmt::Display,
    mut routine: impl FnMut() -> R,
) {
    let name = format!("{function}/{parameter}");
    let mut ran = false;
    group.bench_function(BenchmarkId::new(function, parameter), |b| {
        ran = true;
        b.iter(&mut routine)
    });
    if !ran {
        return;
    }
    for _ in 0..ALLOC_COUNT_RUNS {
        black_box(routine());
    }
    let ((), allocs) = alloc::count(|| {
        for _ in 0..ALLOC_COUNT_RUNS {
            black_box(routine());
        }
    });
    let (count, bytes) = allocs.per(ALLOC_COUNT_RUNS);
    println!("    allocations per iteration: {count} ({bytes} bytes) [{name}]");
}

// ---- 1. the simulation step -------------------------------------------------------------------------

fn step(c: &mut Criterion) {
    let mut group = c.benchmark_group("step");
    for n in [100, 1_000, 10_000] {
        group.throughput(Throughput::Elements(n as u64));
        for (kind, players, wanderers) in [("players", n, 0), ("wanderers", 0, n)] {
            let mut arena = ArenaFixture::new(players, wanderers);
            bench_counted(&mut group, kind, n, || arena.tick());
        }
    }
    group.finish();
}

// ---- 2. the tick's delta ----------------------------------------------------------------------------

fn delta(c: &mut Criterion) {
    let mut group = c.benchmark_group("delta");
    for (n, k) in [(1_000, 10), (1_000, 100), (1_000, 1_000), (10_000, 1_000)] {
        let world = world_with_changes(n, k);
        let base = world.tick() - 1;
        let mut updates = Updates::default();
        group.throughput(Throughput::Elements(n as u64));
        for checksum in [false, true] {
            if checksum && k != n {
                continue;
            }
            let label = if checksum { "N_k_checksum" } else { "N_k" };
            bench_counted(&mut group, label, format!("{n}_{k}"), || {
                updates.begin(&world, checksum);
                let (range, kind) = updates.for_baseline(&world, Some(base));
                debug_assert_eq!(kind, UpdateKind::Delta);
                range.len()
            });
            println!(
                "    frame bytes: {}",
                frame_len(&world, Some(base), checksum)
            );
        }
    }
    group.finish();
}

fn frame_len(
    world: &tickcast::sync::World<ArenaEntity>,
    base: Option<u64>,
    checksum: bool,
) -> usize {
    let mut updates = Updates::default();
    updates.begin(world, checksum);
    updates.for_baseline(world, base).0.len()
}

// ---- 4. coalesced delta from an old baseline ----------------------------------------------------------

/// Ticks the coalesced bench's baseline is behind.
const BEHIND_TICKS: u64 = 20;

fn coalesced(c: &mut Criterion) {
    let mut group = c.benchmark_group("coalesced");
    // 1,000 moving players, one reconnecting (despawn + spawn) per tick, as in a real run.
    let mut arena = ArenaFixture::new(1_000, 0);
    for _ in 0..2 * BEHIND_TICKS {
        arena.churn(1);
        arena.tick();
    }
    let world = &arena.world;
    let mut updates = Updates::default();
    group.throughput(Throughput::Elements(world.len() as u64));
    for (label, base) in [
        ("behind_1", Some(world.tick() - 1)),
        ("behind_20", Some(world.tick() - BEHIND_TICKS)),
        ("full", None),
    ] {
        bench_counted(&mut group, label, world.len(), || {
            updates.begin(world, false);
            updates.for_baseline(world, base).0.len()
        });
        println!("    frame bytes: {}", frame_len(world, base, false));
    }
    group.finish();
}

// ---- 3. fan-out of one framed update ------------------------------------------------------------------

fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout");
    group.sample_size(30);
    // The tick's delta of a world where 1,000 players moved: about 4 KiB, framed once.
    let world = world_with_changes(1_000, 1_000);
    let base = world.tick() - 1;
    let mut updates = Updates::default();
    updates.begin(&world, false);
    let frame_bytes = updates.for_baseline(&world, Some(base)).0.len();
    println!("fanout: one delta frame of {frame_bytes} bytes per connection");
    for (label, copies) in [("conns", true), ("conns_no_copy", false)] {
        for n in [100, 1_000, 10_000] {
            // 10,000 connections take milliseconds an iteration: the fewest samples criterion takes.
            group.sample_size(if n >= 10_000 { 10 } else { 30 });
            let sock = || {
                if copies {
                    MemSock::new(true)
                } else {
                    MemSock::discarding()
                }
            };
            let mut conns: Vec<MemConn> = (0..n).map(|_| MemConn::with_sock(sock())).collect();
            for conn in conns.iter_mut() {
                conn.baseline = Some(base);
            }
            let mut stats = FanOutStats::default();
            let mut write_list = WriteList::default();
            group.throughput(Throughput::Elements(n as u64));
            bench_counted(&mut group, label, n, || {
                fan_out(
                    &mut updates,
                    &world,
                    &mut conns,
                    &mut write_list,
                    &mut stats,
                );
                // Hand the next iteration the same tick to send again (one store per connection).
                for conn in conns.iter_mut() {
                    conn.baseline = Some(base);
                }
            });
            assert_eq!(stats.skipped + stats.full + stats.coalesced, 0);
            assert!(conns.iter().all(|c| c.out.is_empty()), "sinks keep up");
        }
    }
    group.finish();
}

// ---- the whole tick -----------------------------------------------------------------------------------

fn tick(c: &mut Criterion) {
    let mut group = c.benchmark_group("tick");
    group.sample_size(30);
    let mut tick_loop = TickLoop::new(1_000, 0, 1_000, Readers::KEEP_UP, ALLOC_WARM_TICKS);
    group.throughput(Throughput::Elements(1_000));
    bench_counted(&mut group, "players_conns", "1000_1000", || {
        tick_loop.tick()
    });
    group.finish();
}

// ---- 5. the codec -------------------------------------------------------------------------------------

/// The wire messages, with realistic field values.
struct Messages {
    server: Vec<(&'static str, Server)>,
    client: Vec<(&'static str, Client)>,
}

fn messages() -> Messages {
    let mut rng = tickcast::sim::Rng::new(9);
    let entities: Vec<(u32, ArenaEntity)> = (0..100)
        .map(|id| {
            let state = ArenaEntity {
                x: rng.below(8000) as u16,
                y: rng.below(8000) as u16,
                seq: 1_000 + rng.below(1_000) as u32,
            };
            (id, state)
        })
        .collect();
    let diffs: Vec<(u32, ArenaDiff)> = (0..100)
        .map(|id| {
            let diff = ArenaDiff {
                dx: rng.below(81) as i16 - 40,
                dy: rng.below(81) as i16 - 40,
                dseq: 1,
            };
            (id, diff)
        })
        .collect();
    let tick = 123_456;
    Messages {
        server: vec![
            (
                "welcome",
                ServerMsg::Welcome {
                    protocol: proto::PROTOCOL_VERSION,
                    tick_hz: 20,
                    tick,
                    connection_id: 4_242,
                    room: "default".to_string(),
                },
            ),
            (
                "joined",
                ServerMsg::Joined {
                    entity: 417,
                    resume_token: [0x5a; proto::RESUME_TOKEN_LEN],
                    resumed: false,
                },
            ),
            ("full_100", ServerMsg::Full { tick, entities }),
            (
                "delta_100",
                ServerMsg::Delta {
                    base: tick - 1,
                    tick,
                    despawned: Vec::new(),
                    set: Vec::new(),
                    changed: diffs,
                },
            ),
            (
                "checksum",
                ServerMsg::Checksum {
                    tick,
                    hash: 0x9e37_79b9_7f4a_7c15,
                },
            ),
            (
                "pong",
                ServerMsg::Pong {
                    nonce: 77_777,
                    tick,
                },
            ),
        ],
        client: vec![
            (
                "hello",
                ClientMsg::Hello {
                    protocol: proto::PROTOCOL_VERSION,
                    name: "bot-04242".to_string(),
                    ticket: String::new(),
                    resume: None,
                },
            ),
            (
                "input",
                ClientMsg::Input {
                    seq: 1_234,
                    input: ArenaInput { dx: 90, dy: -90 },
                },
            ),
            ("ping", ClientMsg::Ping { nonce: 77_777 }),
        ],
    }
}

/// Encodes a server message the way the server does: `Full` and `Delta` streamed (ids as gaps), the rest
/// through serde.
fn encode_server(out: &mut Vec<u8>, msg: &Server) {
    match msg {
        ServerMsg::Full { tick, entities } => {
            proto::write_full(out, *tick, entities.iter().map(|(id, s)| (*id, s)))
        }
        ServerMsg::Delta {
            base,
            tick,
            despawned,
            set,
            changed,
        } => proto::write_delta(
            out,
            *base,
            *tick,
            despawned.iter().copied(),
            set.iter().map(|(id, s)| (*id, s)),
            changed.iter().copied(),
        ),
        other => proto::encode_into(out, other),
    }
}

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("proto");
    let messages = messages();
    let mut out = Vec::with_capacity(4096);
    for (name, msg) in &messages.server {
        out.clear();
        encode_server(&mut out, msg);
        let bytes = out.clone();
        println!("proto: {name} is {} bytes", bytes.len());
        bench_counted(&mut group, "encode", name, || {
            out.clear();
            encode_server(&mut out, msg);
            out.len()
        });
        bench_counted(&mut group, "decode", name, || {
            proto::decode::<Server>(&bytes).expect("round trip")
        });
    }
    for (name, msg) in &messages.client {
        let bytes = proto::encode(msg);
        println!("proto: {name} is {} bytes", bytes.len());
        bench_counted(&mut group, "encode", name, || {
            out.clear();
            proto::encode_into(&mut out, msg);
            out.len()
        });
        bench_counted(&mut group, "decode", name, || {
            proto::decode_client::<ArenaInput>(&bytes).expect("round trip")
        });
    }
    group.finish();
}

// ---- the kernel floor ---------------------------------------------------------------------------------

fn kernel_floor(c: &mut Criterion) {
    let mut group = c.benchmark_group("kernel");
    for size in [4 * 1024, 8 * 1024, 32 * 1024] {
        let frame = vec![0x5au8; size];
        group.throughput(Throughput::Bytes(size as u64));
        for (label, lowat) in [("send_nodelay", None), ("send_tuned", Some(16 * 1024))] {
            let mut pair = kernel::Loopback::new(lowat).expect("loopback pair");
            group.bench_function(BenchmarkId::new(label, size), |b| {
                b.iter_custom(|iters| (0..iters).map(|_| pair.send(&frame)).sum::<Duration>())
            });
            let stats = pair.stats;
            let read = pair.finish();
            println!(
                "    {} sends, {} would-block retries (untimed), {} partial, {read} bytes read",
                stats.sends, stats.would_block, stats.partial
            );
        }
    }
    group.finish();
}

// ---- TLS: what encrypting one update costs ---------------------------------------------------------------

/// A server and a client rustls connection with their handshake done in memory (a certificate made here).
fn tls_pair() -> (rustls::ServerConnection, rustls::ClientConnection) {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.key_pair.serialize_der()));
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![made.cert.der().clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(made.cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut s = rustls::ServerConnection::new(std::sync::Arc::new(server)).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut c = rustls::ClientConnection::new(std::sync::Arc::new(client), name).unwrap();
    let mut wire = Vec::new();
    while s.is_handshaking() || c.is_handshaking() {
        wire.clear();
        while c.wants_write() {
            c.write_tls(&mut wire).unwrap();
        }
        s.read_tls(&mut &wire[..]).unwrap();
        s.process_new_packets().unwrap();
        wire.clear();
        while s.wants_write() {
            s.write_tls(&mut wire).unwrap();
        }
        c.read_tls(&mut &wire[..]).unwrap();
        c.process_new_packets().unwrap();
    }
    (s, c)
}

/// One update written to a TLS connection: rustls seals it into a record (AES-GCM, with the negotiated
/// TLS 1.3 suite) and the record is taken out, as `net::tls::Stream::write` does per update per connection.
/// Beside it, the plain path's copy of the same bytes.
fn tls(c: &mut Criterion) {
    use std::io::Write;
    let mut group = c.benchmark_group("tls");
    let (mut server, _client) = tls_pair();
    let suite = server
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()));
    println!("tls: negotiated {}", suite.unwrap_or_default());
    let mut wire = Vec::with_capacity(64 * 1024);
    for size in [200usize, 1_000, 4_000, 16_000] {
        let update = vec![0x5au8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::new("seal_update", size), |b| {
            b.iter(|| {
                wire.clear();
                server.writer().write_all(&update).unwrap();
                while server.wants_write() {
                    server.write_tls(&mut wire).unwrap();
                }
                black_box(wire.len())
            })
        });
        group.bench_function(BenchmarkId::new("plain_copy", size), |b| {
            b.iter(|| {
                wire.clear();
                wire.extend_from_slice(&update);
                black_box(wire.len())
            })
        });
        wire.clear();
        server.writer().write_all(&update).unwrap();
        while server.wants_write() {
            server.write_tls(&mut wire).unwrap();
        }
        println!(
            "    {size} B of update: {} B on the wire ({} B of TLS framing)",
            wire.len(),
            wire.len() - size
        );
    }
    group.finish();
}

// ---- 6. allocations on the steady-state tick path -------------------------------------------------------

/// Counts the allocations of [`ALLOC_CHECK_TICKS`] ticks of [`TickLoop`] and prints them per tick, in
/// total and by phase.
fn allocation_check() {
    println!(
        "allocation check: {ALLOC_CHECK_TICKS} ticks of inputs + step + complete_tick + begin (checksum every \
         {}) + for_baseline + queue to in-memory sockets + write step, after {ALLOC_WARM_TICKS} warm-up ticks",
        fixtures::CHECKSUM_EVERY_TICKS
    );
    let readers = |slow_one_in, every_ticks, drains| Readers {
        slow_one_in,
        every_ticks,
        drains,
    };
    let cases = [
        ("every reader keeps up", 1_000, 0, Readers::KEEP_UP),
        ("every reader keeps up", 1_000, 9_000, Readers::KEEP_UP),
        (
            "1 in 10 readers takes 16 KiB every 8 ticks",
            1_000,
            0,
            readers(10, 8, 1),
        ),
        (
            "every reader takes 16 KiB 3 times a tick",
            1_000,
            9_000,
            readers(1, 1, 3),
        ),
        (
            "every reader takes 16 KiB once a tick",
            1_000,
            9_000,
            readers(1, 1, 1),
        ),
    ];
    let conns = 1_000;
    for (what, players, wanderers, readers) in cases {
        let mut tick_loop = TickLoop::new(players, wanderers, conns, readers, ALLOC_WARM_TICKS);
        for _ in 0..ALLOC_CHECK_TICKS {
            tick_loop.tick();
        }
        let a = tick_loop.allocs;
        let total =
            a.readers.count + a.step.count + a.begin.count + a.fan_out.count + a.flush.count;
        let per_tick = |x: alloc::Allocs| x.per(ALLOC_CHECK_TICKS).0;
        let bytes =
            a.readers.bytes + a.step.bytes + a.begin.bytes + a.fan_out.bytes + a.flush.bytes;
        println!(
            "allocations per tick: {} ({} entities, {conns} connections; {what}) [{} bytes per tick]",
            total as f64 / ALLOC_CHECK_TICKS as f64,
            tick_loop.entities(),
            bytes as f64 / ALLOC_CHECK_TICKS as f64,
        );
        let s = tick_loop.stats;
        println!(
            "    by phase: readers {}, step {}, begin {}, fan-out {} (write-list growth {}), write {}; \
             updates: {} delta, {} coalesced, {} full, {} skipped",
            per_tick(a.readers),
            per_tick(a.step),
            per_tick(a.begin),
            per_tick(a.fan_out),
            s.write_list_grows as f64 / ALLOC_CHECK_TICKS as f64,
            per_tick(a.flush),
            s.delta,
            s.coalesced,
            s.full,
            s.skipped
        );
    }
}

criterion::criterion_group!(
    benches,
    step,
    delta,
    coalesced,
    fanout,
    tick,
    codec,
    kernel_floor,
    tls
);

fn main() {
    allocation_check();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
