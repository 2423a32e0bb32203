//! Test harness: a real server on 127.0.0.1:0 in a thread, and a real WebSocket client with a mirror.
#![allow(dead_code)]

pub mod redis;
pub mod tls;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tickcast::metrics::Metrics;
use tickcast::proto::{self, ClientMsg, ServerMsg};
use tickcast::sim::arena::{ArenaDiff, ArenaEntity, ArenaInput, ArenaSettings};
use tickcast::sim::{Game, RoomType, RoomTypes};
use tickcast::sync::{Mirror, World};
use tickcast::{Config, Handle, Server};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

/// Upper bound on any wait in a test: a safety net against hangs, never a measured threshold.
pub const WAIT_MAX: Duration = Duration::from_secs(30);

pub type Msg = ServerMsg<ArenaEntity, ArenaDiff>;

/// What a test adjusts: the server's settings (through `Deref`, so `c.tick_hz = 50`) and the arena's
/// (`c.npcs`, `c.seed`), which are the game's and not in the server's `Config`.
#[derive(Debug, Clone)]
pub struct TestConfig {
    pub server: Config,
    pub npcs: usize,
    pub seed: u64,
}

impl TestConfig {
    fn new() -> TestConfig {
        let arena = tickcast::sim::arena::ArenaSettings::default();
        TestConfig {
            server: Config {
                listen: "127.0.0.1:0".parse().unwrap(),
                ..Config::default()
            },
            npcs: arena.npcs,
            seed: arena.seed,
        }
    }
}

impl std::ops::Deref for TestConfig {
    type Target = Config;
    fn deref(&self) -> &Config {
        &self.server
    }
}

impl std::ops::DerefMut for TestConfig {
    fn deref_mut(&mut self) -> &mut Config {
        &mut self.server
    }
}

/// Starts the real `tickcast` binary with `args` (which should say `--listen 127.0.0.1:0`) and reads its
/// first stderr line for the address it listens on: the child, the rest of its stderr, and the address.
pub fn spawn_listening(
    args: &[&str],
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStderr>,
    SocketAddr,
) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tickcast"))
        .args(args)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .parse()
        .unwrap();
    (child, stderr, addr)
}

/// The slow-consumer tests' queue limits (`busy`).
pub const BUSY_SEND_HWM: usize = 16 * 1024;
pub const BUSY_SEND_LIMIT: usize = 256 * 1024;

/// A server whose deltas are big (1,000 wanderers at 50 Hz, about 4 KB a delta), so a reader that stops
/// falls behind within a few ticks; its queue limits are [`BUSY_SEND_HWM`] and [`BUSY_SEND_LIMIT`], and
/// nothing but `lag_limit_ms` closes a stalled reader.
pub fn busy(c: &mut TestConfig, lag_limit_ms: u64) {
    c.npcs = 1000;
    c.tick_hz = 50;
    c.checksum_every_ticks = 10;
    c.send_hwm_bytes = BUSY_SEND_HWM;
    c.send_limit_bytes = BUSY_SEND_LIMIT;
    c.tcp_notsent_lowat_bytes = 4096;
    c.lag_limit_ms = lag_limit_ms;
    c.close_linger_ms = 60_000;
    c.idle_timeout_ms = 120_000;
    c.ping_interval_ms = 60_000;
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub handle: Option<Handle>,
    thread: Option<JoinHandle<Metrics>>,
}

impl TestServer {
    /// Starts the arena (as the binary serves it: room type `arena`) on 127.0.0.1:0 with `cfg` adjusted
    /// by `adjust`.
    pub fn start(adjust: impl FnOnce(&mut TestConfig)) -> TestServer {
        Self::start_types(adjust, |cfg| {
            let arena = ArenaSettings {
                npcs: cfg.npcs,
                seed: cfg.seed,
                ..ArenaSettings::default()
            };
            arena.room_types()
        })
    }

    /// Starts one room type, `arena`, of the game `make_game` builds for every room (an arena-compatible
    /// one: the clients mirror arena entities).
    pub fn start_game<G>(
        adjust: impl FnOnce(&mut TestConfig),
        mut make_game: impl FnMut(&mut World<ArenaEntity>, &TestConfig) -> G + Send + 'static,
    ) -> TestServer
    where
        G: Game<State = ArenaEntity> + 'static,
    {
        Self::start_types(adjust, move |cfg| {
            let cfg = cfg.clone();
            RoomTypes::new(RoomType::new("arena", move |world, _| {
                Ok(make_game(world, &cfg))
            }))
        })
    }

    /// Starts the room types `types` makes, of any game (`Client` mirrors arena entities; a test of
    /// another game brings its own client: tests/example_teams.rs).
    pub fn start_types<G>(
        adjust: impl FnOnce(&mut TestConfig),
        types: impl FnOnce(&TestConfig) -> RoomTypes<G> + Send + 'static,
    ) -> TestServer
    where
        G: Game + 'static,
    {
        let mut cfg = TestConfig::new();
        adjust(&mut cfg);
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let types = types(&cfg);
            let mut server = Server::bind(cfg.server, types).expect("bind");
            tx.send((server.local_addr(), server.handle())).unwrap();
            server.run().expect("server loop");
            server.metrics().clone()
        });
        let (addr, handle) = rx.recv().expect("server started");
        TestServer {
            addr,
            handle: Some(handle),
            thread: Some(thread),
        }
    }

    /// A server started elsewhere (the real binary); `stop` and `Drop` leave it alone.
    pub fn external(addr: SocketAddr) -> TestServer {
        TestServer {
            addr,
            handle: None,
            thread: None,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Drains the server and returns its final metrics.
    pub fn stop(mut self) -> Metrics {
        self.handle.as_ref().expect("in-process server").shutdown();
        self.thread.take().unwrap().join().expect("server thread")
    }

    /// POST `path` with `body`, returning (status, body).
    pub fn post(&self, path: &str, body: &str) -> (u16, String) {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        http_exchange(self.addr, request.as_bytes())
    }

    /// GET `path`, returning (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        http_exchange(
            self.addr,
            format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes(),
        )
    }

    /// Sends a WebSocket upgrade for `target` that the server refuses, and returns the status and body
    /// of its answer (it closes after it).
    pub fn upgrade_answer(&self, target: &str) -> (u16, String) {
        let head = std::str::from_utf8(UPGRADE)
            .unwrap()
            .replacen("/ws", target, 1);
        http_exchange(self.addr, head.as_bytes())
    }

    /// The value of an unlabelled metric from /metrics.
    pub fn metric(&self, name: &str) -> u64 {
        let (_, body) = self.get("/metrics");
        metric_in(&body, name).unwrap_or_else(|| panic!("metric {name} not in:\n{body}"))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let (Some(thread), Some(handle)) = (self.thread.take(), &self.handle) {
            handle.shutdown();
            let _ = thread.join();
        }
    }
}

// ---- Raw WebSocket, for clients that misbehave on purpose or step with a hand-driven loop ----

/// The upgrade request a raw client sends (`GET /ws`, the RFC 6455 example key).
pub const UPGRADE: &[u8] =
    b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// The RFC 6455 example masking key.
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// One masked client frame, as any WebSocket client would put it on the wire.
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![u8::from(fin) << 7 | opcode];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=65535 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().zip(MASK.iter().cycle()).map(|(b, m)| b ^ m));
    out
}

/// The unmasked server frame at the start of `stream`, once all of it has arrived: its opcode, its
/// payload and its length on the wire.
pub fn server_frame(stream: &[u8]) -> Option<(u8, &[u8], usize)> {
    let len = tickcast::net::frame::frame_len(stream)?;
    if stream.len() < len {
        return None;
    }
    let header = match stream[1] & 0x7f {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    Some((stream[0] & 0x0f, &stream[header..len], len))
}

/// The code and reason in a close frame's payload.
pub fn close_of(payload: &[u8]) -> (u16, String) {
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    (code, String::from_utf8_lossy(&payload[2..]).to_string())
}

pub fn metric_in(body: &str, name: &str) -> Option<u64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Sends raw bytes and reads the whole answer (the server closes after answering).
pub fn http_exchange(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT_MAX)).unwrap();
    http_exchange_on(s, request)
}

/// Writes `request` to `s` (plain or TLS) and reads the answer to its end: (status, body).
pub fn http_exchange_on(mut s: impl Read + Write, request: &[u8]) -> (u16, String) {
    s.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A test client's socket: plain, or TLS (rustls) over it. Derefs to the TCP socket for timeouts and
/// shutdowns; reads and writes go through TLS when it is on.
pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl From<TcpStream> for ClientStream {
    fn from(sock: TcpStream) -> Self {
        ClientStream::Plain(sock)
    }
}

impl std::ops::Deref for ClientStream {
    type Target = TcpStream;
    fn deref(&self) -> &TcpStream {
        match self {
            ClientStream::Plain(s) => s,
            ClientStream::Tls(s) => s.get_ref(),
        }
    }
}

impl Read for ClientStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            ClientStream::Plain(s) => s.read(buf),
            ClientStream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for ClientStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            ClientStream::Plain(s) => s.write(buf),
            ClientStream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            ClientStream::Plain(s) => s.flush(),
            ClientStream::Tls(s) => s.flush(),
        }
    }
}

/// A TCP connection to `server` (with a read timeout of [`WAIT_MAX`]) whose receive buffer is `rcvbuf`
/// bytes, so that not reading fills it quickly.
pub fn small_rcvbuf_stream(server: &TestServer, rcvbuf: usize) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(rcvbuf).unwrap();
    sock.connect(&server.addr.into()).unwrap();
    let stream: TcpStream = sock.into();
    stream.set_read_timeout(Some(WAIT_MAX)).unwrap();
    stream
}

/// A new player's `Hello` (no ticket, no resume), for any game's input type.
pub fn hello_msg<I>(name: &str) -> ClientMsg<I> {
    ClientMsg::Hello {
        protocol: proto::PROTOCOL_VERSION,
        name: name.into(),
        ticket: String::new(),
        resume: None,
    }
}

/// A `Watch` without a ticket, for any game's input type.
pub fn watch_msg<I>() -> ClientMsg<I> {
    ClientMsg::Watch {
        protocol: proto::PROTOCOL_VERSION,
        ticket: String::new(),
    }
}

/// A real WebSocket client (tungstenite, blocking) with a mirror of the world.
pub struct Client {
    pub ws: WebSocket<ClientStream>,
    pub mirror: Mirror<ArenaEntity>,
    pub connection_id: u64,
    pub tick_hz: u16,
    /// The room `Welcome` named.
    pub room: String,
    pub entity: Option<u32>,
    /// From the last `Joined`.
    pub resume_token: Option<proto::ResumeToken>,
    pub resumed: Option<bool>,
    /// Ticks of every update applied, in order.
    pub ticks: Vec<u64>,
    /// The last input seq sent; kept across a resume.
    pub seq: u32,
}

impl Client {
    /// Upgrades and reads `Welcome`; the server sends nothing more until `hello` or `watch`.
    pub fn connect(server: &TestServer) -> Client {
        Self::connect_stream(server, TcpStream::connect(server.addr).unwrap())
    }

    /// Upgrades at `path` (`/ws/ROOM?...`) and reads `Welcome`.
    pub fn connect_at(server: &TestServer, path: &str) -> Client {
        let stream = TcpStream::connect(server.addr).unwrap();
        stream.set_read_timeout(Some(WAIT_MAX)).unwrap();
        let url = format!("ws://{}{path}", server.addr);
        let (ws, _) = tungstenite::client(url, ClientStream::from(stream)).expect("handshake");
        Self::from_upgraded(ws)
    }

    /// Upgrades at an absolute `ws://HOST:PORT/PATH` URL (a matchmaker's `connect`) and reads `Welcome`.
    pub fn connect_url(url: &str) -> Client {
        let host = url
            .strip_prefix("ws://")
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("not a ws:// URL: {url}"));
        let stream = TcpStream::connect(host).unwrap();
        stream.set_read_timeout(Some(WAIT_MAX)).unwrap();
        let (ws, _) = tungstenite::client(url, ClientStream::from(stream)).expect("handshake");
        Self::from_upgraded(ws)
    }

    /// Reads until a game `Message` arrives, and returns its body as text.
    pub fn recv_message(&mut self) -> String {
        match self.recv_until(|m| matches!(m, Msg::Message { .. })) {
            Msg::Message { body } => String::from_utf8(body).expect("a UTF-8 message"),
            _ => unreachable!(),
        }
    }

    /// Sends a `Send` with `text`.
    pub fn say(&mut self, text: &str) {
        self.send(&ClientMsg::Send {
            body: text.as_bytes().to_vec(),
        });
    }

    /// Connects and sends `Watch`: a spectator.
    pub fn watching(server: &TestServer) -> Client {
        let mut c = Self::connect(server);
        c.watch();
        c
    }

    /// A spectator over a socket with a small receive buffer, so that not reading fills it quickly.
    pub fn watching_small_rcvbuf(server: &TestServer, rcvbuf: usize) -> Client {
        Self::watching_small_rcvbuf_at(server, "/ws", rcvbuf)
    }

    /// [`Client::watching_small_rcvbuf`] upgraded at `path`.
    pub fn watching_small_rcvbuf_at(server: &TestServer, path: &str, rcvbuf: usize) -> Client {
        let stream = small_rcvbuf_stream(server, rcvbuf);
        let url = format!("ws://{}{path}", server.addr);
        let (ws, _) = tungstenite::client(url, ClientStream::from(stream)).expect("handshake");
        let mut c = Self::from_upgraded(ws);
        c.watch();
        c
    }

    /// Reconnects as the same player: a new connection whose `Hello` resumes with this client's token and
    /// the tick its mirror holds, taking over the mirror, the seq numbering and the ticks seen. This client's
    /// connection is left as it is (the server closes it 4005 if it is still open).
    pub fn reconnect_resuming(&mut self, server: &TestServer) -> Client {
        self.reconnect_resuming_with(server, None, "")
    }

    fn connect_stream(server: &TestServer, stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(WAIT_MAX)).unwrap();
        let (ws, _) =
            tungstenite::client(server.url(), ClientStream::from(stream)).expect("handshake");
        Self::from_upgraded(ws)
    }

    /// A client over an upgraded socket, once it has read `Welcome`.
    pub fn from_upgraded(ws: WebSocket<ClientStream>) -> Client {
        let mut c = Client {
            ws,
            mirror: Mirror::new(),
            connection_id: 0,
            tick_hz: 0,
            room: String::new(),
            entity: None,
            resume_token: None,
            resumed: None,
            ticks: Vec::new(),
            seq: 0,
        };
        match c.recv() {
            ServerMsg::Welcome {
                protocol,
                tick_hz,
                connection_id,
                room,
                ..
            } => {
                assert_eq!(protocol, proto::PROTOCOL_VERSION);
                c.tick_hz = tick_hz;
                c.connection_id = connection_id;
                c.room = room;
            }
            other => panic!("expected Welcome first, got {other:?}"),
        }
        c
    }

    /// The next server message, applied to the mirror (a checksum mismatch panics).
    pub fn recv(&mut self) -> Msg {
        loop {
            match self.ws.read().expect("read") {
                Message::Binary(bytes) => {
                    let msg: Msg = proto::decode(&bytes).expect("decode server message");
                    if let ServerMsg::Joined {
                        entity,
                        resume_token,
                        resumed,
                    } = msg
                    {
                        self.entity = Some(entity);
                        self.resume_token = Some(resume_token);
                        self.resumed = Some(resumed);
                    }
                    if let Some(tick) = self
                        .mirror
                        .apply(msg.clone())
                        .expect("mirror follows the server")
                    {
                        self.ticks.push(tick);
                    }
                    return msg;
                }
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// Reads until `pred` holds for a message; bounded by [`WAIT_MAX`].
    pub fn recv_until(&mut self, mut pred: impl FnMut(&Msg) -> bool) -> Msg {
        let deadline = Instant::now() + WAIT_MAX;
        loop {
            assert!(
                Instant::now() < deadline,
                "condition not met within {WAIT_MAX:?}"
            );
            let msg = self.recv();
            if pred(&msg) {
                return msg;
            }
        }
    }

    /// Reads until `pred` holds for the mirror; bounded by [`WAIT_MAX`].
    pub fn wait_for(&mut self, mut pred: impl FnMut(&Mirror<ArenaEntity>) -> bool) {
        let deadline = Instant::now() + WAIT_MAX;
        while !pred(&self.mirror) {
            assert!(
                Instant::now() < deadline,
                "mirror condition not met within {WAIT_MAX:?}"
            );
            self.recv();
        }
    }

    /// Reads until the mirror verified `n` more checksums.
    pub fn verify_checksums(&mut self, n: u64) {
        let target = self.mirror.checksums_verified + n;
        let deadline = Instant::now() + WAIT_MAX;
        while self.mirror.checksums_verified < target {
            assert!(
                Instant::now() < deadline,
                "{n} checksums not verified within {WAIT_MAX:?}"
            );
            self.recv();
        }
    }

    pub fn send(&mut self, msg: &ClientMsg<ArenaInput>) {
        self.ws
            .send(Message::Binary(proto::encode(msg).into()))
            .expect("send");
    }

    pub fn send_raw(&mut self, bytes: Vec<u8>) {
        self.ws.send(Message::Binary(bytes.into())).expect("send");
    }

    /// Joins as a new player; returns its entity.
    pub fn hello(&mut self, name: &str) -> u32 {
        self.send(&hello_msg(name));
        self.recv_until(|m| matches!(m, ServerMsg::Joined { .. }));
        self.entity.expect("Joined")
    }

    /// Spectates: updates from the next tick on.
    pub fn watch(&mut self) {
        self.send(&watch_msg());
    }

    pub fn input(&mut self, dx: i8, dy: i8) -> u32 {
        self.seq += 1;
        let seq = self.seq;
        self.send(&ClientMsg::Input {
            seq,
            input: ArenaInput { dx, dy },
        });
        seq
    }

    /// Reads until the server closes; returns the close code and reason.
    pub fn expect_close(&mut self) -> (u16, String) {
        let deadline = Instant::now() + WAIT_MAX;
        while Instant::now() < deadline {
            match self.ws.read() {
                Ok(Message::Close(Some(frame))) => {
                    return (u16::from(frame.code), frame.reason.to_string())
                }
                Ok(Message::Close(None)) => return (u16::from(CloseCode::Status), String::new()),
                Ok(_) => {}
                Err(e) => panic!("connection ended without a close frame: {e}"),
            }
        }
        panic!("no close within {WAIT_MAX:?}");
    }
}

// -- Resume tokens and tickets (issue 11): resuming with a ticket, and checks an attack test makes.

impl Client {
    /// Upgrades at `/ws?ticket=...` and reads `Welcome`.
    pub fn connect_with_ticket(server: &TestServer, ticket: &str) -> Client {
        let stream = TcpStream::connect(server.addr).unwrap();
        stream.set_read_timeout(Some(WAIT_MAX)).unwrap();
        let url = format!("{}?ticket={ticket}", server.url());
        let (ws, _) = tungstenite::client(url, ClientStream::from(stream)).expect("handshake");
        Self::from_upgraded(ws)
    }

    /// Sends `Hello` resuming `token` from `tick`, with `ticket` (empty: none); the answer is the caller's
    /// to read (`Joined`, or a close).
    pub fn hello_resuming(&mut self, token: proto::ResumeToken, tick: u64, ticket: &str) {
        self.send(&ClientMsg::Hello {
            protocol: proto::PROTOCOL_VERSION,
            name: "resuming".into(),
            ticket: ticket.into(),
            resume: Some(proto::Resume { token, tick }),
        });
    }

    /// [`Client::reconnect_resuming`] with tickets: `url_ticket` on the upgrade, `hello_ticket` in `Hello`.
    pub fn reconnect_resuming_with(
        &mut self,
        server: &TestServer,
        url_ticket: Option<&str>,
        hello_ticket: &str,
    ) -> Client {
        let token = self.resume_token.expect("joined before");
        let tick = self.mirror.tick().expect("an update applied");
        let mut c = match url_ticket {
            Some(ticket) => Self::connect_with_ticket(server, ticket),
            None => Self::connect(server),
        };
        c.mirror = std::mem::take(&mut self.mirror);
        c.ticks = std::mem::take(&mut self.ticks);
        c.seq = self.seq;
        c.hello_resuming(token, tick, hello_ticket);
        c.recv_until(|m| matches!(m, ServerMsg::Joined { .. }));
        c
    }

    /// Asserts that this client was sent every tick it lived through, none skipped or coalesced.
    pub fn assert_every_tick(&self) {
        assert!(!self.ticks.is_empty(), "no update applied");
        self.assert_every_tick_since(0);
    }

    /// Asserts that the updates this client applied, from the `from`-th on, are every tick one by one.
    pub fn assert_every_tick_since(&self, from: usize) {
        for pair in self.ticks[from..].windows(2) {
            assert_eq!(
                pair[1],
                pair[0] + 1,
                "a gap in the ticks received: {:?}",
                self.ticks
            );
        }
    }
}
