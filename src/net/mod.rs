//! Sockets and framing: connections, HTTP on the same port, WebSocket frames. Together with the loop in
//! `server/`, the only code that touches sockets.

pub mod conn;
pub mod frame;
pub mod http;
pub mod meter;
pub mod peers;
pub mod rate;
pub mod socket;
pub mod tls;
