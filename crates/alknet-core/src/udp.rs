//! The UDP sockets under QUIC endpoints, with buffers sized for bursts.
//!
//! Linux gives a UDP socket about 208 KiB of receive buffer unless told
//! otherwise. A QUIC sender whose congestion window has grown bursts far more
//! than that at a receiver that is busy decrypting, and every datagram that
//! finds the buffer full is dropped: the sender takes the drop for congestion
//! and halves its window. On loopback a 512 MiB upload through `alknet proxy`
//! lost about 600 datagrams this way (none with 4 MiB buffers). TCP grows
//! its buffers by itself; UDP needs asking, as quic-go and cloudflared do.
//!
//! The kernel caps what a process may ask for at `net.core.rmem_max` and
//! `net.core.wmem_max` (and reports double what it granted, counting its own
//! bookkeeping). [`bind`] asks for [`REQUESTED`] and returns what it got;
//! the node warns when a cap left either buffer short.
//!
//! Every QUIC packet costs its sender and receiver a fixed amount of work
//! (framing, header protection, acknowledgement tracking) on top of the
//! per-byte cost, so endpoints here look for paths that carry datagrams
//! larger than quinn's Ethernet-sized default, up to [`MAX_DATAGRAM`]:
//! [`endpoint_config`] accepts them and [`transport_config`] searches for
//! them. Where the path carries only 1,500-byte frames the search costs a
//! few lost probes and settles where it would have anyway.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use socket2::{Domain, Protocol, Socket, Type};

/// The receive and send buffer each socket asks for: 4 MiB.
pub const REQUESTED: usize = 4 << 20;

/// The largest UDP payload the node's QUIC endpoints accept and probe for:
/// 6,550 bytes. quinn hands the kernel up to ten datagrams per system call
/// (generic segmentation offload) and Linux refuses a call whose datagrams
/// add up to more than 64 KiB with their headers; ten of these fit. quinn
/// drops a refused call without a word, so a larger ceiling loses whole
/// batches, which black-hole detection answers by falling back to 1,200
/// bytes (`quic_grows_its_datagrams_to_the_path_and_loses_none` in
/// `tests/node.rs` watches for it).
pub const MAX_DATAGRAM: u16 = 6550;

/// An endpoint configuration that accepts datagrams up to [`MAX_DATAGRAM`].
pub fn endpoint_config() -> quinn::EndpointConfig {
    let mut config = quinn::EndpointConfig::default();
    config
        .max_udp_payload_size(MAX_DATAGRAM)
        .expect("MAX_DATAGRAM is within QUIC's limits");
    config
}

/// A transport configuration whose path MTU discovery searches up to
/// [`MAX_DATAGRAM`]; the rest is quinn's default.
pub fn transport_config() -> quinn::TransportConfig {
    let mut config = quinn::TransportConfig::default();
    let mut discovery = quinn::MtuDiscoveryConfig::default();
    discovery.upper_bound(MAX_DATAGRAM);
    config.mtu_discovery_config(Some(discovery));
    config
}

/// Buffer sizes the kernel granted, as it reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffers {
    /// `SO_RCVBUF` after the request.
    pub receive: usize,
    /// `SO_SNDBUF` after the request.
    pub send: usize,
}

impl Buffers {
    /// Whether the kernel's caps cut the receive buffer below [`REQUESTED`].
    pub fn receive_is_short(&self) -> bool {
        self.receive < REQUESTED
    }

    /// Whether the kernel's caps cut the send buffer below [`REQUESTED`].
    /// A sender that fills it pauses for
    /// [`RETRY_WHEN_FULL`](crate::quic_runtime::RETRY_WHEN_FULL); at
    /// 10 Gbit/s Linux's default buffer drains in a third of that, and the
    /// sender idles for the rest.
    pub fn send_is_short(&self) -> bool {
        self.send < REQUESTED
    }
}

/// A UDP socket bound to `addr` with buffers of up to [`REQUESTED`].
///
/// A refused size is not an error: the socket keeps the size the kernel
/// allowed, which [`Buffers`] reports.
pub fn bind(addr: SocketAddr) -> io::Result<(std::net::UdpSocket, Buffers)> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // Errors here only mean the old size stays; the read-back says which.
    let _ = socket.set_recv_buffer_size(REQUESTED);
    let _ = socket.set_send_buffer_size(REQUESTED);
    socket.bind(&addr.into())?;
    let buffers = Buffers {
        receive: socket.recv_buffer_size()?,
        send: socket.send_buffer_size()?,
    };
    Ok((socket.into(), buffers))
}

/// A client-only QUIC endpoint on a [`bind`] socket at the wildcard address
/// of `remote`'s family. A short buffer is logged at debug level only: a
/// client is often a command whose stderr is the user's terminal.
pub fn client_endpoint(remote: SocketAddr) -> io::Result<quinn::Endpoint> {
    let local: SocketAddr = if remote.is_ipv6() {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let (socket, buffers) = bind(local)?;
    if buffers.receive_is_short() {
        tracing::debug!(
            granted = buffers.receive,
            requested = REQUESTED,
            "UDP receive buffer capped by net.core.rmem_max"
        );
    }
    quinn::Endpoint::new(
        endpoint_config(),
        None,
        socket,
        Arc::new(crate::quic_runtime::QuicRuntime),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_asks_for_more_than_the_default_and_reports_the_grant() {
        let (socket, buffers) = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_eq!(
            buffers.receive,
            socket2::SockRef::from(&socket).recv_buffer_size().unwrap()
        );
        // Linux's default is 208 KiB and its cap is never below that; a
        // request of 4 MiB ends above the default even when capped, since
        // the kernel doubles what it grants.
        assert!(buffers.receive > 212_992, "{buffers:?}");
        assert!(buffers.send > 212_992, "{buffers:?}");
    }
}
