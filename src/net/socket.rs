//! Options on accepted sockets, and the process's file descriptors: the soft `RLIMIT_NOFILE` raised to
//! what the server needs, and a reserve descriptor to answer a client when the table is full anyway.

use std::io;
use std::os::fd::AsRawFd;

use mio::net::TcpStream;

/// TCP_NODELAY, so a small update leaves at once, and TCP_NOTSENT_LOWAT, so the kernel holds only a little
/// unsent data and a slow reader shows up as a full user-space queue within milliseconds.
pub fn tune(sock: &TcpStream, notsent_lowat_bytes: u32) -> io::Result<()> {
    sock.set_nodelay(true)?;
    let value = notsent_lowat_bytes as libc::c_int;
    // SAFETY: a valid fd owned by `sock`, and a pointer to a live c_int with its size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Descriptors beyond connections and health slots: the listener, epoll, the waker, stdio, the reserve,
/// a signal pipe, a file being read, with room to spare.
pub const DESCRIPTORS_SPARE: u64 = 64;

/// Raises the soft `RLIMIT_NOFILE` to `needed` if it is lower (never lowers it). If the hard limit is
/// below `needed`, says so with the numbers and the fix. Returns the soft limit now in force.
pub fn raise_descriptor_limit(needed: u64) -> Result<u64, String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a pointer to a live rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(format!(
            "cannot read RLIMIT_NOFILE: {}",
            io::Error::last_os_error()
        ));
    }
    if lim.rlim_cur >= needed {
        return Ok(lim.rlim_cur);
    }
    if lim.rlim_max < needed {
        return Err(format!(
            "--max-connections and --health-slots need {needed} file descriptors, but the hard limit \
             (RLIMIT_NOFILE) is {}: raise it (`ulimit -Hn {needed}` as root, `LimitNOFILE={needed}` in the \
             systemd unit, `--ulimit nofile={needed}` for docker) or lower --max-connections",
            lim.rlim_max
        ));
    }
    lim.rlim_cur = needed;
    // SAFETY: a pointer to a live rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(format!(
            "cannot raise RLIMIT_NOFILE to {needed}: {}",
            io::Error::last_os_error()
        ));
    }
    Ok(needed)
}

/// Whether an accept error means the process or the system is out of file descriptors.
pub fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// A descriptor held in reserve (`/dev/null`), given up for a moment when the table is full so that one
/// waiting client can be accepted, answered and closed instead of left hanging in the backlog.
pub fn open_reserve() -> io::Result<std::fs::File> {
    std::fs::File::open("/dev/null")
}
