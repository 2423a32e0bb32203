//! The kernel floor: plain non-blocking send() of one frame size over N loopback sockets (placeholder until
//! the capacity benchmark lands).
fn main() {
    eprintln!("send_floor: not written yet");
}
