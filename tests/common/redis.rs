//! A real `redis-server` for the cluster tests (Debian's, installed by scripts/test.sh) on a free loopback
//! port, and the cluster's shared secret.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::WAIT_MAX;

/// The cluster secret every test process shares.
pub const CLUSTER_SECRET: &str = "the cluster's shared secret, for tests";

/// A file holding [`CLUSTER_SECRET`] (written once per test binary, left in the temp directory).
pub fn cluster_secret() -> PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tickcast-cluster-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret");
        std::fs::write(&path, CLUSTER_SECRET).unwrap();
        path
    })
    .clone()
}

/// A `redis-server` of our own on 127.0.0.1:`port`, without persistence; killed when dropped.
pub struct Redis {
    pub port: u16,
    child: Child,
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Redis {
        let redis = Redis::spawn(port, &[]);
        let t0 = Instant::now();
        while redis.con().is_none() {
            assert!(
                t0.elapsed() < WAIT_MAX,
                "redis-server did not answer on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        redis
    }

    /// Starts `redis-server` on `port` with `extra` flags, without waiting for it to answer.
    pub fn spawn(port: u16, extra: &[&str]) -> Redis {
        let port_text = port.to_string();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port_text,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server; scripts/test.sh installs it)");
        Redis { port, child }
    }

    pub fn url(&self) -> String {
        url(self.port)
    }

    pub fn con(&self) -> Option<redis::Connection> {
        let client = redis::Client::open(self.url()).ok()?;
        let mut con = client
            .get_connection_with_timeout(Duration::from_secs(1))
            .ok()?;
        redis::cmd("PING").query::<String>(&mut con).ok()?;
        Some(con)
    }

    /// The score of `member` in sorted set `key`.
    pub fn zscore(&self, key: &str, member: &str) -> Option<f64> {
        redis::cmd("ZSCORE")
            .arg(key)
            .arg(member)
            .query(&mut self.con()?)
            .ok()?
    }

    pub fn get(&self, key: &str) -> Option<String> {
        redis::cmd("GET").arg(key).query(&mut self.con()?).ok()?
    }

    /// Waits (bounded) until `key`'s value satisfies `done`.
    pub fn wait_for(&self, key: &str, done: impl Fn(Option<&str>) -> bool) {
        let t0 = Instant::now();
        loop {
            let value = self.get(key);
            if done(value.as_deref()) {
                return;
            }
            assert!(t0.elapsed() < WAIT_MAX, "{key} is {value:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}/")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed (SIGKILL) when dropped, so a failing test leaves none behind.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The real `tickcast` binary as process `id` of the cluster whose Redis is `redis_url`, on a port of its
/// own that is also its `--public-url`; with its address once it listens.
pub fn spawn_binary(redis_url: &str, id: &str, extra: &[&str]) -> (Killed, std::net::SocketAddr) {
    use std::io::BufRead;
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_tickcast"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--npcs", "0"])
        .args(["--redis", redis_url, "--process-id", id])
        .args(["--public-url", &format!("ws://127.0.0.1:{port}")])
        .arg("--cluster-secret-file")
        .arg(cluster_secret())
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    let mut line = String::new();
    std::io::BufReader::new(child.0.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("listening on http://"), "{line:?}");
    (child, format!("127.0.0.1:{port}").parse().unwrap())
}
