//! A real cluster for the bots' tests: a `redis-server` of our own (Debian's, installed by
//! scripts/test.sh) on a free loopback port, without persistence, and real `tickcast` processes (the
//! binary of this test's profile, see [`server_binary`]) in cluster mode, each on a free port that is also
//! its `--public-url`. Everything is killed when the [`Cluster`] is dropped, a failing test included.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::WAIT_MAX;

/// Environment variable naming a `tickcast` binary to run instead of building this profile's.
pub const SERVER_BIN_ENV: &str = "TICKCAST_BIN";
/// The cluster's shared secret (seat tickets), written to a file for `--cluster-secret-file`.
pub const CLUSTER_SECRET: &str = "the bots' cluster secret, for tests";
/// Most bytes of a process's stderr kept for failure messages.
const LOG_MAX_BYTES: usize = 64 * 1024;
/// Most bytes of a Redis reply read.
const REPLY_BYTES_MAX: usize = 64 * 1024;

/// The `tickcast` binary: `TICKCAST_BIN`, or the one of this test's own profile, brought up to date with
/// `cargo build` first (tests of the `bots` package do not get `CARGO_BIN_EXE_tickcast`, and
/// `cargo test -p bots` would not build it).
pub fn server_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os(SERVER_BIN_ENV) {
        return bin.into();
    }
    // This test runs as target/<profile>/deps/<test>-<hash>; the server is target/<profile>/tickcast.
    let exe = std::env::current_exe().expect("the test's own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable in target/<profile>/deps");
    let target_dir = profile_dir.parent().expect("target/<profile>");
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("profile directory name");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bots/ sits in the workspace");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .arg("build")
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .args(["-p", "tickcast", "--bin", "tickcast", "--target-dir"])
        .arg(target_dir);
    match profile {
        "debug" => {}
        "release" => {
            build.arg("--release");
        }
        other => {
            build.args(["--profile", other]);
        }
    }
    let status = build.status().expect("run cargo build");
    assert!(status.success(), "cargo build --bin tickcast: {status:?}");
    let bin = profile_dir.join(format!("tickcast{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} not built (cross-compiling? set {SERVER_BIN_ENV})",
        bin.display()
    );
    bin
}

/// A free loopback port (bound, then let go: the process given it binds it again at once).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process whose stderr is read (and kept, up to a bound) by a thread, so its pipe never fills;
/// killed when dropped.
pub struct Process {
    child: Child,
    stderr: Option<JoinHandle<String>>,
}

impl Process {
    fn spawn(command: &mut Command) -> Process {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {command:?}: {e}"));
        let mut pipe = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut log = String::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                if log.len() < LOG_MAX_BYTES {
                    log.push_str(&String::from_utf8_lossy(&chunk[..n]));
                }
            }
            log
        });
        Process {
            child,
            stderr: Some(stderr),
        }
    }

    /// Kills the process and returns what it wrote on stderr.
    pub fn kill(&mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `redis-server` on 127.0.0.1:`port`, `--save '' --appendonly no`.
pub struct Redis {
    pub port: u16,
    process: Process,
}

impl Redis {
    /// Starts it and waits (bounded) until it answers `PING`.
    pub fn start() -> Redis {
        let port = free_port();
        let process = Process::spawn(
            Command::new("/usr/bin/redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"]),
        );
        let redis = Redis { port, process };
        let t0 = Instant::now();
        while redis.command(&["PING"]).as_deref() != Some("+PONG") {
            assert!(
                t0.elapsed() < WAIT_MAX,
                "redis-server did not answer on port {port} (scripts/test.sh installs it)"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// One command in RESP; its reply's first line (`+PONG`, `$-1` for nil) or, for a bulk string, the
    /// string itself. `None` when Redis cannot be reached.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let mut sock = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        sock.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut request = format!("*{}\r\n", args.len());
        for a in args {
            request.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        sock.write_all(request.as_bytes()).ok()?;
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&reply).into_owned();
            if let Some((first, rest)) = text.split_once("\r\n") {
                match first.strip_prefix('$').and_then(|n| n.parse::<i64>().ok()) {
                    Some(n) if n >= 0 && rest.len() >= n as usize => {
                        return Some(rest[..n as usize].to_string())
                    }
                    Some(n) if n >= 0 => {}
                    _ => return Some(first.to_string()),
                }
            }
            if reply.len() > REPLY_BYTES_MAX {
                return None;
            }
            match sock.read(&mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(n) => reply.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// `GET key`: the value, `None` when absent (or Redis is unreachable).
    pub fn get(&self, key: &str) -> Option<String> {
        self.command(&["GET", key]).filter(|v| v != "$-1")
    }
}

/// Redis and `tickcast` processes `p1`, `p2`, ... registered in it; all killed when dropped.
pub struct Cluster {
    /// Each process's id and address (also its `--public-url`, `ws://ADDR`, or `wss://ADDR` with TLS).
    pub processes: Vec<(String, SocketAddr)>,
    children: Vec<Process>,
    pub redis: Redis,
    secret_dir: PathBuf,
    /// The processes serve TLS (wss://, https://).
    tls: bool,
}

impl Cluster {
    /// Starts Redis and `count` processes with `extra` flags each, and waits (bounded) until every one
    /// has registered (its `tickcast:process:<id>` entry is in Redis) and answers `GET /healthz`.
    pub fn start(count: usize, extra: &[&str]) -> Cluster {
        Cluster::start_with(count, extra, None)
    }

    /// [`Cluster::start`] with every process serving TLS with `cert` (`--tls-cert`, `--tls-key`), its
    /// `--public-url` `wss://ADDR`; `GET /healthz` is asked over https, trusting `cert`.
    pub fn start_tls(count: usize, extra: &[&str], cert: &super::tls::TestCert) -> Cluster {
        Cluster::start_with(count, extra, Some(cert))
    }

    fn start_with(count: usize, extra: &[&str], tls: Option<&super::tls::TestCert>) -> Cluster {
        let bin = server_binary();
        let redis = Redis::start();
        let secret_dir = std::env::temp_dir().join(format!(
            "tickcast-bots-cluster-{}-{}",
            std::process::id(),
            redis.port
        ));
        std::fs::create_dir_all(&secret_dir).unwrap();
        let secret = secret_dir.join("secret");
        std::fs::write(&secret, CLUSTER_SECRET).unwrap();
        let mut cluster = Cluster {
            processes: Vec::new(),
            children: Vec::new(),
            redis,
            secret_dir,
            tls: tls.is_some(),
        };
        let ws = if tls.is_some() { "wss" } else { "ws" };
        for n in 1..=count {
            let id = format!("p{n}");
            let port = free_port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let mut command = Command::new(&bin);
            command
                .args(["--listen", &addr.to_string()])
                .args(["--public-url", &format!("{ws}://{addr}")])
                .args(["--redis", &cluster.redis.url(), "--process-id", &id])
                .arg("--cluster-secret-file")
                .arg(&secret)
                .args(extra);
            if let Some(cert) = tls {
                command.arg("--tls-cert").arg(&cert.cert);
                command.arg("--tls-key").arg(&cert.key);
            }
            let process = Process::spawn(&mut command);
            cluster.children.push(process);
            cluster.processes.push((id, addr));
        }
        let healthy = |addr: SocketAddr| -> bool {
            let answer = match tls {
                Some(cert) => super::tls::https_get(addr, cert.client_config(), "/healthz"),
                None => super::try_http_get(addr, "/healthz"),
            };
            answer.map(|(s, _)| s) == Some(200)
        };
        for (id, addr) in cluster.processes.clone() {
            let t0 = Instant::now();
            let key = format!("tickcast:process:{id}");
            while cluster.redis.get(&key).is_none() || !healthy(addr) {
                if t0.elapsed() > WAIT_MAX {
                    let logs = cluster.logs();
                    panic!("{id} at {addr} never registered; stderr:\n{logs}");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        cluster
    }

    /// The `http://` (with TLS `https://`) base URL of process `i` (0-based): where the bots matchmake.
    pub fn http_url(&self, i: usize) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.processes[i].1)
    }

    /// Kills every process and returns what each wrote on stderr (for a failure message).
    pub fn logs(&mut self) -> String {
        let mut out = String::new();
        for (child, (id, _)) in self.children.iter_mut().zip(&self.processes) {
            out.push_str(&format!("--- {id}\n{}\n", child.kill()));
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            child.kill();
        }
        let _ = std::fs::remove_dir_all(&self.secret_dir);
    }
}
