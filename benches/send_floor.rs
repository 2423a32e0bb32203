//! The kernel floor of the fan-out: what one tick's sends would cost if the server did nothing but the
//! system call. It opens N loopback TCP connections, tunes the sending ends like the server tunes an accepted
//! socket (non-blocking, `TCP_NODELAY`, `TCP_NOTSENT_LOWAT`, through `tickcast::net::socket::tune`), drains the
//! receiving ends with reader threads (each an epoll loop over its share, like a bot thread), then for R rounds
//! sends one B-byte buffer to every socket with one `send()` each, and prints one JSON object on stdout.
//!
//! `--drain between` (the default) lets the readers drain only after a round's sends are done: nothing reads
//! concurrently with the sends, so they pay no cross-core contention on the sockets (the receiving side's
//! wake-ups, ACK processing and buffer frees happen after the clock stopped). That is the floor proper, a
//! lower bound. `--drain concurrent` lets the readers wait in `epoll_wait` and read as the bytes arrive, as
//! an idle client does; each send may then also pay for waking the reader and for sharing the socket with
//! it across cores.
//!
//! ```sh
//! cargo bench --bench send_floor -- --sockets 500 --frame-bytes 2048 --rounds 100 --interval-ms 50 \
//!     --sender-cpu 0 --reader-cpus 1
//! ```
//!
//! Figures, per round (N sends): `ns_per_send` is the round's wall time divided by N (mean, p50, p99, min
//! and max over the rounds); `cpu_ns_per_send` is the sending thread's CPU time over all measured rounds
//! divided by all sends (wall minus preemption). On loopback a `send()` also runs the receiving side's TCP
//! processing inline (onto the receiver's queue and its epoll ready list), which the server pays too when
//! it sends to local bots.
//!
//! A send that would block (`would_block`) or takes only part of the buffer (`short_sends`) is cheaper than
//! a full one, so a floor with either above zero is too low: give the readers more cores or pace the rounds
//! (`--interval-ms`, the tick period, is what the server does).
//!
//! **The whole job** (`--input-bytes M`, with `--drain between`): before each round every client writes one
//! M-byte input (the bots' `Input` frame on the wire), untimed; then the sender does what a perfectly
//! batched server does per player per tick: its share of one `epoll_wait` over all the sockets (as few
//! waits as the events buffer allows), one `recv()` of each input, and the round's `send()`s. Its CPU time
//! per player (`whole_cpu_ns_per_player`) is the floor the server's whole CPU per delivered update is held
//! against; `input_cpu_ns_per_player` is the read side alone.
//!
//! Pinning: the process can be placed with `taskset` by the caller; `--sender-cpu` and `--reader-cpus` pin
//! the sending thread and the readers separately (`sched_setaffinity`), so the sender can sit alone on the
//! server's core while the readers run on the bots' cores.

use std::io::{self, Read};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

/// Longest the readers get, after the last round, to read everything that was sent.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Most sockets one run may open (each is two file descriptors).
const SOCKETS_MAX: usize = 50_000;
/// Largest frame.
const FRAME_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Most rounds.
const ROUNDS_MAX: usize = 1_000_000;

/// The floor's settings. `cargo bench` passes `--bench` to every bench binary, and `cargo bench -- --test`
/// (criterion's smoke mode, as CI's) passes `--test`: then one tiny run proves the binary works.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "send_floor",
    about = "The kernel floor of the fan-out (docs/PERFORMANCE.md)"
)]
struct Args {
    /// Loopback connections, each sent one frame per round.
    #[arg(long, default_value_t = 500, value_parser = in_range(SOCKETS_MAX))]
    sockets: usize,
    /// Bytes of the frame sent to every socket.
    #[arg(long, default_value_t = 2048, value_parser = in_range(FRAME_BYTES_MAX))]
    frame_bytes: usize,
    /// Measured rounds.
    #[arg(long, default_value_t = 200, value_parser = in_range(ROUNDS_MAX))]
    rounds: usize,
    /// Unmeasured rounds first, so buffers and caches reach their steady state.
    #[arg(long, default_value_t = 10)]
    warmup_rounds: usize,
    /// Between rounds, in ms (the tick period is what the server does); 0: back to back.
    #[arg(long, default_value_t = 0)]
    interval_ms: u64,
    /// Reader threads.
    #[arg(long, default_value_t = 1, value_parser = in_range(256))]
    readers: usize,
    /// `between`: the readers drain after each round (the floor proper, a lower bound); `concurrent`: they
    /// read while it is sent, as idle clients do.
    #[arg(long, default_value = "between", value_parser = ["between", "concurrent"])]
    drain: String,
    /// Bytes of one input each client writes before every round (0: none); then the sender also waits for
    /// and reads every input each round (the whole job). Only with `--drain between`.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=65_536))]
    input_bytes: u32,
    /// Events one `epoll_wait` may return in the whole-job rounds (the server's own buffer is 1,024).
    #[arg(long, default_value_t = 1024, value_parser = in_range(1 << 20))]
    events_max: usize,
    /// TCP_NOTSENT_LOWAT of the sending ends (the server's default).
    #[arg(long, default_value_t = 16 * 1024)]
    notsent_lowat_bytes: u32,
    /// Pin the sending thread to this cpu.
    #[arg(long)]
    sender_cpu: Option<usize>,
    /// Pin the readers to these cpus, like 1-3,5.
    #[arg(long, value_parser = parse_cpu_list, default_value = "")]
    reader_cpus: CpuList,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
    /// Criterion's smoke mode (`cargo bench -- --test`): one run of 4 sockets and 2 rounds.
    #[arg(long)]
    test: bool,
}

impl Args {
    /// Whether the readers read while the round is sent.
    fn concurrent(&self) -> bool {
        self.drain == "concurrent"
    }
}

/// A value parser for an integer in `1..=max`.
fn in_range(max: usize) -> impl Fn(&str) -> Result<usize, String> + Clone {
    move |value| match value.parse::<usize>() {
        Ok(v) if (1..=max).contains(&v) => Ok(v),
        _ => Err(format!("expected an integer in 1..={max}, got {value:?}")),
    }
}

/// A list of cpus, as `--reader-cpus` takes it.
#[derive(Debug, Clone, Default)]
struct CpuList(Vec<usize>);

/// "1-3,5" -> [1, 2, 3, 5].
fn parse_cpu_list(s: &str) -> Result<CpuList, String> {
    let bad = || format!("--reader-cpus: expected a list like 1-3,5, got {s:?}");
    let mut cpus = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (
                lo.parse().map_err(|_| bad())?,
                hi.parse().map_err(|_| bad())?,
            ),
            None => {
                let one: usize = part.parse().map_err(|_| bad())?;
                (one, one)
            }
        };
        if lo > hi || hi >= libc::CPU_SETSIZE as usize {
            return Err(bad());
        }
        cpus.extend(lo..=hi);
    }
    Ok(CpuList(cpus))
}

/// Pins the calling thread to `cpus`.
fn pin(cpus: &[usize]) -> io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET and sched_setaffinity get valid pointers and
    // in-range cpu numbers (checked by parse_cpu_list).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a pointer to a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A reader thread's order in `--drain between` mode, acknowledged on its `done` channel once carried out.
enum Order {
    /// Read this many bytes (what the last round sent to this reader's share).
    Drain(u64),
    /// Write one input of this many bytes to every socket of the share.
    Input(usize),
}

/// One reader thread: an epoll loop over its share of the receiving ends, adding what it reads to `read`.
/// With `orders` (`--drain between`) it reads only when told, up to the bytes it is told, and acknowledges
/// on `done`; without, it reads as bytes arrive until `stop`.
fn reader(
    mut socks: Vec<mio::net::TcpStream>,
    cpus: Vec<usize>,
    stop: Arc<AtomicBool>,
    read: Arc<AtomicU64>,
    orders: Option<(mpsc::Receiver<Order>, mpsc::Sender<io::Result<()>>)>,
) -> io::Result<()> {
    if !cpus.is_empty() {
        pin(&cpus)?;
    }
    let mut poll = Poll::new()?;
    for (i, s) in socks.iter_mut().enumerate() {
        poll.registry().register(s, Token(i), Interest::READABLE)?;
    }
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 256 * 1024];
    let Some((orders, done)) = orders else {
        while !stop.load(Ordering::Relaxed) {
            poll.poll(&mut events, Some(Duration::from_millis(20)))?;
            read.fetch_add(
                drain_ready(&events, &mut socks, &mut buf)?,
                Ordering::Relaxed,
            );
        }
        return Ok(());
    };
    // Each drain: poll (1 ms at most) and read what is ready until the share's bytes are in (bounded).
    for order in orders {
        let target = match order {
            Order::Drain(target) => target,
            Order::Input(bytes) => {
                let failed = write_inputs(&mut socks, bytes);
                let stop = failed.is_err();
                let _ = done.send(failed);
                if stop {
                    break;
                }
                continue;
            }
        };
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        let mut mine = 0u64;
        let result = loop {
            if mine >= target {
                break Ok(());
            }
            if Instant::now() > deadline {
                break Err(io::Error::other(format!(
                    "read {mine} of {target} bytes in time"
                )));
            }
            match poll
                .poll(&mut events, Some(Duration::from_millis(1)))
                .and_then(|()| drain_ready(&events, &mut socks, &mut buf))
            {
                Ok(n) => {
                    mine += n;
                    read.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) => break Err(e),
            }
        };
        let failed = result.is_err();
        let _ = done.send(result);
        if failed {
            break;
        }
    }
    Ok(())
}

/// Writes one input of `bytes` to every socket (the client side, whose buffers are empty: a write that
/// would block is an error of the setup).
fn write_inputs(socks: &mut [mio::net::TcpStream], bytes: usize) -> io::Result<()> {
    let input = vec![0x82u8; bytes];
    for s in socks {
        io::Write::write_all(s, &input)?;
    }
    Ok(())
}

/// Reads every ready socket until it would block; returns the bytes read.
fn drain_ready(
    events: &Events,
    socks: &mut [mio::net::TcpStream],
    buf: &mut [u8],
) -> io::Result<u64> {
    let mut total = 0u64;
    for ev in events.iter() {
        let s = &mut socks[ev.token().0];
        loop {
            match s.read(buf) {
                Ok(0) => break,
                Ok(n) => total += n as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(total)
}

/// The sending ends (server side, accepted and tuned) and the receiving ends (client side, non-blocking).
fn connect(args: &Args) -> io::Result<(Vec<mio::net::TcpStream>, Vec<mio::net::TcpStream>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut senders = Vec::with_capacity(args.sockets);
    let mut receivers = Vec::with_capacity(args.sockets);
    for _ in 0..args.sockets {
        let client = TcpStream::connect(addr)?;
        let (accepted, _) = listener.accept()?;
        client.set_nonblocking(true)?;
        client.set_nodelay(true)?;
        accepted.set_nonblocking(true)?;
        let accepted = mio::net::TcpStream::from_std(accepted);
        tickcast::net::socket::tune(&accepted, args.notsent_lowat_bytes)?;
        senders.push(accepted);
        receivers.push(mio::net::TcpStream::from_std(client));
    }
    Ok((senders, receivers))
}

/// What the sending loop measured.
struct Sent {
    /// Wall ns per send of each measured round.
    round_ns_per_send: Vec<f64>,
    /// The sender's CPU time in the send phases of the measured rounds, and in their input phases.
    cpu: Duration,
    input_cpu: Duration,
    /// In the measured input phases: `epoll_wait` calls, `recv()` calls, inputs read whole.
    epoll_waits: u64,
    recvs: u64,
    inputs: u64,
    would_block: u64,
    short_sends: u64,
    /// Bytes accepted by the kernel, warm-up rounds included (the readers must read them all).
    bytes: u64,
}

/// The sender's side of `--drain between`: one order channel per reader, and their acknowledgements.
struct Drains {
    orders: Vec<mpsc::Sender<Order>>,
    done: mpsc::Receiver<io::Result<()>>,
}

impl Drains {
    /// Tells each reader what its share was sent this round and waits (bounded) until all have read it.
    fn drain(&self, sent_per_reader: &[u64]) -> io::Result<()> {
        self.order(|i| Order::Drain(sent_per_reader[i]))
    }

    /// Tells each reader to write one input of `bytes` to every socket of its share, and waits (bounded).
    fn inputs(&self, bytes: usize) -> io::Result<()> {
        self.order(|_| Order::Input(bytes))
    }

    fn order(&self, order: impl Fn(usize) -> Order) -> io::Result<()> {
        for (i, tx) in self.orders.iter().enumerate() {
            tx.send(order(i))
                .map_err(|_| io::Error::other("a reader thread ended"))?;
        }
        for _ in &self.orders {
            self.done
                .recv_timeout(DRAIN_TIMEOUT + Duration::from_secs(1))
                .map_err(|_| io::Error::other("a reader did not drain in time"))??;
        }
        Ok(())
    }
}

/// The sender's side of the whole job: its poll over the sending ends, and what it has of each input.
struct Inputs {
    poll: Poll,
    events: Events,
    bytes: usize,
    /// Bytes of this round's input read so far, per socket.
    got: Vec<usize>,
    buf: Vec<u8>,
}

impl Inputs {
    fn new(args: &Args, senders: &mut [mio::net::TcpStream]) -> io::Result<Inputs> {
        let poll = Poll::new()?;
        for (i, s) in senders.iter_mut().enumerate() {
            poll.registry().register(s, Token(i), Interest::READABLE)?;
        }
        Ok(Inputs {
            poll,
            events: Events::with_capacity(args.events_max),
            bytes: args.input_bytes as usize,
            got: vec![0; senders.len()],
            buf: vec![0; args.input_bytes as usize],
        })
    }

    /// Waits for and reads every socket's input of this round, as a batched loop would: `epoll_wait`, then
    /// one `recv()` per ready socket for the bytes its input still lacks. Adds the calls to `out`.
    fn read_round(&mut self, fds: &[i32], out: &mut Sent, measured: bool) -> io::Result<()> {
        self.got.iter_mut().for_each(|g| *g = 0);
        let (mut whole, mut waits, mut recvs) = (0usize, 0u64, 0u64);
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while whole < fds.len() {
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "read {whole} of {} inputs in time",
                    fds.len()
                )));
            }
            self.poll
                .poll(&mut self.events, Some(Duration::from_millis(100)))?;
            waits += 1;
            for ev in self.events.iter() {
                let i = ev.token().0;
                let want = self.bytes - self.got[i];
                if want == 0 {
                    continue;
                }
                // SAFETY: fds[i] is an open socket owned by `senders`; the buffer holds `want` bytes.
                let rc = unsafe {
                    libc::recv(
                        fds[i],
                        self.buf.as_mut_ptr().cast(),
                        want,
                        libc::MSG_DONTWAIT,
                    )
                };
                recvs += 1;
                if rc < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::WouldBlock {
                        return Err(e);
                    }
                } else if rc == 0 {
                    return Err(io::Error::other("a client closed its end"));
                } else {
                    self.got[i] += rc as usize;
                    whole += usize::from(self.got[i] == self.bytes);
                }
            }
        }
        if measured {
            out.epoll_waits += waits;
            out.recvs += recvs;
            out.inputs += whole as u64;
        }
        Ok(())
    }
}

fn send_rounds(
    args: &Args,
    senders: &mut [mio::net::TcpStream],
    drains: Option<&Drains>,
) -> io::Result<Sent> {
    let fds: Vec<i32> = senders.iter().map(|s| s.as_raw_fd()).collect();
    let mut inputs = match (args.input_bytes, drains) {
        (0, _) | (_, None) => None,
        (_, Some(_)) => Some(Inputs::new(args, senders)?),
    };
    let mut sent_per_reader = vec![0u64; args.readers];
    let frame = vec![0x5au8; args.frame_bytes];
    let interval = Duration::from_millis(args.interval_ms);
    let mut out = Sent {
        round_ns_per_send: Vec::with_capacity(args.rounds),
        cpu: Duration::ZERO,
        input_cpu: Duration::ZERO,
        epoll_waits: 0,
        recvs: 0,
        inputs: 0,
        would_block: 0,
        short_sends: 0,
        bytes: 0,
    };
    let mut next = Instant::now();
    for round in 0..args.warmup_rounds + args.rounds {
        let measured = round >= args.warmup_rounds;
        if let (Some(inputs), Some(drains)) = (inputs.as_mut(), drains) {
            drains.inputs(inputs.bytes)?;
            let cpu0 = thread_cpu();
            inputs.read_round(&fds, &mut out, measured)?;
            if measured {
                out.input_cpu += thread_cpu() - cpu0;
            }
        }
        let cpu0 = thread_cpu();
        let t0 = Instant::now();
        let (mut would_block, mut short) = (0u64, 0u64);
        sent_per_reader.iter_mut().for_each(|b| *b = 0);
        for (i, &fd) in fds.iter().enumerate() {
            // SAFETY: fd is an open socket owned by `senders`; the buffer is live for the call.
            let rc = unsafe {
                libc::send(
                    fd,
                    frame.as_ptr().cast(),
                    frame.len(),
                    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                )
            };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::WouldBlock {
                    return Err(e);
                }
                would_block += 1;
            } else {
                out.bytes += rc as u64;
                sent_per_reader[i % args.readers] += rc as u64;
                if (rc as usize) < frame.len() {
                    short += 1;
                }
            }
        }
        let wall = t0.elapsed();
        if measured {
            out.cpu += thread_cpu() - cpu0;
            out.round_ns_per_send
                .push(wall.as_nanos() as f64 / fds.len() as f64);
            out.would_block += would_block;
            out.short_sends += short;
        }
        if let Some(drains) = drains {
            drains.drain(&sent_per_reader)?;
        }
        if !interval.is_zero() {
            next += interval;
            let now = Instant::now();
            if next > now {
                thread::sleep(next - now);
            } else {
                next = now;
            }
        }
    }
    Ok(out)
}

/// The q-quantile of sorted values (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn run(args: &Args) -> io::Result<String> {
    let (mut senders, receivers) = connect(args)?;
    let stop = Arc::new(AtomicBool::new(false));
    let read = Arc::new(AtomicU64::new(0));
    let mut shares: Vec<Vec<mio::net::TcpStream>> = (0..args.readers).map(|_| Vec::new()).collect();
    for (i, r) in receivers.into_iter().enumerate() {
        shares[i % args.readers].push(r);
    }
    let (done_tx, done_rx) = mpsc::channel();
    let mut orders = Vec::new();
    let mut readers = Vec::new();
    for share in shares {
        let (stop, read, cpus) = (stop.clone(), read.clone(), args.reader_cpus.0.clone());
        let told = if args.concurrent() {
            None
        } else {
            let (tx, rx) = mpsc::channel();
            orders.push(tx);
            Some((rx, done_tx.clone()))
        };
        readers.push(
            thread::Builder::new()
                .name("floor-reader".into())
                .spawn(move || reader(share, cpus, stop, read, told))?,
        );
    }
    let drains = (!args.concurrent()).then_some(Drains {
        orders,
        done: done_rx,
    });
    if let Some(cpu) = args.sender_cpu {
        pin(&[cpu])?;
    }
    let sent = send_rounds(args, &mut senders, drains.as_ref());
    // Closing the order channels ends the readers of `--drain between`.
    drop(drains);
    // Let the readers catch up, bounded, so every byte sent is also known to have been read.
    let total_sent = sent.as_ref().map(|s| s.bytes).unwrap_or(0);
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while read.load(Ordering::Relaxed) < total_sent && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join()
            .map_err(|_| io::Error::other("a reader thread panicked"))??;
    }
    let sent = sent?;
    let mut sorted = sent.round_ns_per_send.clone();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len() as f64;
    let mean = sorted.iter().sum::<f64>() / n;
    let sends = (args.rounds * args.sockets) as f64;
    let cpu_ns = sent.cpu.as_nanos() as f64 / sends;
    let input_cpu_ns = sent.input_cpu.as_nanos() as f64 / sends;
    let per_input = |calls: u64| match sent.inputs {
        0 => 0.0,
        inputs => calls as f64 / inputs as f64,
    };
    let opt = |v: Option<usize>| v.map_or("null".to_string(), |c| c.to_string());
    Ok(format!(
        concat!(
            "{{\"sockets\": {}, \"frame_bytes\": {}, \"rounds\": {}, \"warmup_rounds\": {}, ",
            "\"interval_ms\": {}, \"readers\": {}, \"drain\": \"{}\", \"notsent_lowat_bytes\": {}, \"sender_cpu\": {}, ",
            "\"reader_cpus\": {:?}, ",
            "\"ns_per_send\": {{\"mean\": {:.1}, \"p50\": {:.1}, \"p99\": {:.1}, \"min\": {:.1}, \"max\": {:.1}}}, ",
            "\"cpu_ns_per_send\": {:.1}, \"would_block\": {}, \"short_sends\": {}, ",
            "\"input_bytes\": {}, \"input_cpu_ns_per_player\": {:.1}, \"whole_cpu_ns_per_player\": {:.1}, ",
            "\"epoll_waits_per_input\": {:.4}, \"recvs_per_input\": {:.3}, ",
            "\"bytes_sent\": {}, \"bytes_read\": {}}}"
        ),
        args.sockets,
        args.frame_bytes,
        args.rounds,
        args.warmup_rounds,
        args.interval_ms,
        args.readers,
        if args.concurrent() { "concurrent" } else { "between" },
        args.notsent_lowat_bytes,
        opt(args.sender_cpu),
        args.reader_cpus.0,
        mean,
        quantile(&sorted, 0.5),
        quantile(&sorted, 0.99),
        sorted[0],
        sorted[sorted.len() - 1],
        cpu_ns,
        sent.would_block,
        sent.short_sends,
        args.input_bytes,
        input_cpu_ns,
        cpu_ns + input_cpu_ns,
        per_input(sent.epoll_waits),
        per_input(sent.recvs),
        sent.bytes,
        read.load(Ordering::Relaxed),
    ))
}

fn main() {
    use clap::Parser;
    let mut args = Args::parse();
    if args.test {
        (
            args.sockets,
            args.rounds,
            args.warmup_rounds,
            args.interval_ms,
            args.input_bytes,
        ) = (4, 2, 0, 0, 16);
    }
    args.readers = args.readers.min(args.sockets);
    if args.input_bytes > 0 && args.concurrent() {
        eprintln!("send_floor: --input-bytes needs --drain between (the inputs are written between rounds)");
        std::process::exit(2);
    }
    match run(&args) {
        Ok(json) => println!("{json}"),
        Err(e) => {
            eprintln!("send_floor: {e}");
            std::process::exit(1);
        }
    }
}
