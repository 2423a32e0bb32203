//! Options on accepted sockets.

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
