//! The listening socket, bound here rather than by actix so that shutdown can stop new
//! connections without resetting the ones the kernel has already completed.
//!
//! When actix stops, it closes its listener, and the kernel resets every connection still
//! in the listen queue: connections a load balancer has opened and written a request on,
//! that no worker has accepted yet. nginx passes a request whose connection was reset
//! after it was sent to another instance only when its method is idempotent: a POST
//! caught there would fail (`make cluster-test` saw 1 of 13 780). So before actix stops,
//! [`ListenerControl::refuse_new_connections`] makes the socket drop connection requests
//! (SYNs) while the handshakes in progress complete and the queue is accepted. A client
//! that tries during those last moments retransmits its SYN (after 1 s on Linux), finds the
//! socket closed and is refused, and a refused connection is one nginx may always pass to
//! another instance, because it carried no request.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

/// Binds `addr` with a listen queue of `backlog` (the kernel caps it at
/// `net.core.somaxconn`), as actix's own `bind` would, and returns the listener for actix
/// with a handle on the same socket for the shutdown.
pub fn bind(addr: SocketAddr, backlog: i32) -> io::Result<(TcpListener, ListenerControl)> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Like actix and std: a restarted instance may bind while old connections sit in
    // TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    let control = ListenerControl(socket.try_clone()?);
    Ok((socket.into(), control))
}

/// A second descriptor of the listening socket. Dropping it closes only the descriptor:
/// the socket lives until actix closes its own.
#[derive(Debug)]
pub struct ListenerControl(Socket);

impl ListenerControl {
    /// From now on the socket ignores new connection requests; connections already
    /// completed, or completing, still reach the listen queue and are accepted. Consumes
    /// the handle, so that the socket closes when actix closes it.
    ///
    /// Linux only (a socket filter); elsewhere nothing changes and the listen queue is
    /// reset on close, as before.
    pub fn refuse_new_connections(self) -> io::Result<()> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            self.0.attach_filter(&drop_syn_filter())
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        {
            Ok(())
        }
    }
}

/// A classic BPF program run on every segment that reaches the listening socket (the
/// handshakes' SYNs and final ACKs; an accepted connection has a socket of its own). The
/// socket filter sees the TCP header at offset 0: drop a segment whose SYN flag is set,
/// keep the rest.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn drop_syn_filter() -> [socket2::SockFilter; 4] {
    use socket2::SockFilter;
    const LD_B_ABS: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS: A = packet[k]
    const JSET_K: u16 = 0x45; // BPF_JMP | BPF_JSET | BPF_K: A & k ? jt : jf
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K: keep k bytes (0 drops)
    const TCP_FLAGS: u32 = 13;
    const SYN: u32 = 0x02;
    [
        SockFilter::new(LD_B_ABS, 0, 0, TCP_FLAGS),
        SockFilter::new(JSET_K, 0, 1, SYN),
        SockFilter::new(RET_K, 0, 0, 0),
        SockFilter::new(RET_K, 0, 0, u32::MAX),
    ]
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    use super::*;

    #[test]
    fn queued_connections_are_kept_and_new_ones_are_not_started() {
        let (listener, control) = bind("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let addr = listener.local_addr().unwrap();
        // Completed by the kernel and sitting in the listen queue, its request written.
        let mut queued = TcpStream::connect(addr).unwrap();
        queued.write_all(b"ping").unwrap();

        control.refuse_new_connections().unwrap();

        // A new connection request goes unanswered (and would be refused once closed).
        let refused = TcpStream::connect_timeout(&addr, Duration::from_millis(300));
        assert!(
            refused.is_err(),
            "a connection started after the filter: {refused:?}"
        );

        // The queued one is accepted with its request, and it can still be answered.
        let (mut accepted, _) = listener.accept().unwrap();
        let mut request = [0_u8; 4];
        accepted.read_exact(&mut request).unwrap();
        assert_eq!(&request, b"ping");
        accepted.write_all(b"pong").unwrap();
        let mut answer = [0_u8; 4];
        queued.read_exact(&mut answer).unwrap();
        assert_eq!(&answer, b"pong");

        // Closed, the socket refuses at once.
        drop(listener);
        let err = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    }

    #[test]
    fn the_listener_accepts_normally_until_told() {
        let (listener, _control) = bind("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
        assert!(listener.accept().is_ok());
    }
}
