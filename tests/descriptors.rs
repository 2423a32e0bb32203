//! Out of file descriptors: a client is answered 503 and closed (through the server's reserve descriptor)
//! instead of hanging in the listen backlog, and the accept error is counted. One test in its own binary:
//! it lowers the whole process's soft `RLIMIT_NOFILE` and fills the descriptor table, which any other test
//! running beside it would feel. It restores both before it asserts on metrics.

mod common;

use std::fs::File;
use std::io::Read;
use std::net::TcpStream;

use common::{Client, TestServer, WAIT_MAX};

fn nofile() -> libc::rlimit {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a pointer to a live rlimit.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim
}

fn set_soft_nofile(soft: libc::rlim_t) {
    let lim = libc::rlimit {
        rlim_cur: soft,
        ..nofile()
    };
    // SAFETY: a pointer to a live rlimit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
}

/// The highest descriptor open now, plus one.
fn fds_in_use_bound() -> libc::rlim_t {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<libc::rlim_t>().ok())
        .max()
        .unwrap_or(0)
        + 1
}

#[test]
fn out_of_descriptors_a_client_gets_503_and_a_close_not_a_hang() {
    let server = TestServer::start(|c| {
        c.max_connections = 100;
        c.checksum_every_ticks = 5;
    });
    let mut spectator = Client::watching(&server);
    spectator.verify_checksums(1);
    let original = nofile().rlim_cur;

    // A small table, filled with dummies but for one descriptor: the client's socket.
    let soft = fds_in_use_bound() + 16;
    set_soft_nofile(soft);
    let mut dummies = Vec::new();
    while let Ok(f) = File::open("/dev/null") {
        dummies.push(f);
        assert!(
            dummies.len() as libc::rlim_t <= soft,
            "the table never filled"
        );
    }
    dummies.pop();
    let answer = match TcpStream::connect(server.addr) {
        Ok(mut s) => {
            s.set_read_timeout(Some(WAIT_MAX)).unwrap();
            let mut bytes = Vec::new();
            let _ = s.read_to_end(&mut bytes);
            Ok(String::from_utf8_lossy(&bytes).to_string())
        }
        Err(e) => Err(e),
    };
    // Meanwhile the spectator, whose socket is open, kept getting every tick.
    spectator.verify_checksums(2);
    drop(dummies);
    set_soft_nofile(original);

    let text = answer.expect("connect with one descriptor free");
    assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
    assert!(text.contains("server at connection capacity"), "{text}");
    assert!(text.contains("Retry-After: 5\r\n"), "{text}");
    assert_eq!(server.get("/healthz"), (200, "ok\n".to_string()));
    assert!(server.metric("tickcast_accept_errors_total") >= 1);
    assert!(server.metric("tickcast_connections_closed_total{reason=\"rejected\"}") >= 1);
    spectator.assert_every_tick();
}
