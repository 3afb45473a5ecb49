//! Why a node could not start.

use std::net::SocketAddr;

use alknet_core::tls;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Two handlers claim the same ALPN.
    #[error("ALPN `{0}` is served by two handlers")]
    DuplicateAlpn(String),
    /// A handler's ALPN is empty or longer than 255 bytes, or it has none.
    #[error("protocol `{0}`: ALPNs must be 1 to 255 bytes, and there must be at least one")]
    InvalidAlpn(String),
    /// Clients without ALPN can be served by one protocol only, on one of its
    /// own ALPNs, over TCP+TLS.
    #[error(
        "protocol `{0}` cannot serve TCP+TLS clients that offer no ALPN (another does, or the ALPN is not one of its own over TCP+TLS)"
    )]
    WithoutAlpn(String),
    /// A configuration override names a protocol this node does not serve.
    #[error("configuration key `protocols.\"{0}\"`: no protocol of this node serves this ALPN")]
    UnknownProtocol(String),
    /// A plain listener names an ALPN no registered protocol serves.
    #[error("a plain TCP listener is asked for `{0}`, which no protocol of this node serves")]
    PlainListenerWithoutProtocol(String),
    /// A socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// TLS configuration failed.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The root supervisor failed to start.
    #[error("cannot start the supervision tree: {0}")]
    Spawn(String),
}
