//! The seam between the node and a protocol: [`ProtocolHandler`].
//!
//! A protocol crate describes its protocol in a [`Protocol`] constant and runs
//! each connection in an `async fn`; the node does everything else (listening,
//! TLS, routing by ALPN, admission, supervision, the tree):
//!
//! ```
//! use alknet_core::handler::{HandlerError, Protocol, ProtocolHandler};
//! use alknet_core::Connection;
//!
//! /// Echoes every stream back to its sender.
//! struct Echo;
//!
//! impl ProtocolHandler for Echo {
//!     const PROTOCOL: Protocol = Protocol::new(&["example/echo"]);
//!
//!     async fn handle(&self, connection: Connection) -> Result<(), HandlerError> {
//!         while let Some(mut stream) = connection.accept_bi().await? {
//!             tokio::io::copy(&mut stream.recv, &mut stream.send).await?;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! // Registered with `Node::builder(…).protocol(Echo)`; the node holds it as:
//! let echo = alknet_core::ErasedHandler::new(Echo);
//! assert_eq!(echo.protocol().tree_name(), "proto/example/echo");
//! ```
//!
//! The descriptor is an associated constant, not a method or a registration
//! argument: a protocol's ALPNs, transports and certificate are facts of the
//! protocol, so its crate states them once and no call site can pair them wrong.

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::connection::{Connection, TransportKind};

/// Why a connection ended abnormally. The node logs it with the connection's
/// span; it never affects other connections.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandlerError {
    /// The peer broke the protocol's rules (a bad frame, a missing header).
    #[error("peer violated the protocol: {0}")]
    PeerViolation(String),
    /// The connection failed, or a stream could not be opened or accepted.
    #[error(transparent)]
    Connection(#[from] crate::connection::StreamError),
    /// Reading from or writing to a stream failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Anything else, with its cause.
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl HandlerError {
    /// Wraps any error as [`HandlerError::Other`] (for `map_err`).
    pub fn other(error: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>) -> Self {
        Self::Other(error.into())
    }
}

/// Which transports a protocol is advertised on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transports {
    /// QUIC and TCP+TLS.
    Both,
    /// QUIC only (e.g. DNS over QUIC, which has its own TCP story).
    QuicOnly,
    /// TCP+TLS only.
    TcpOnly,
}

impl Transports {
    /// Whether connections over `transport` may negotiate the protocol.
    pub const fn includes(self, transport: TransportKind) -> bool {
        matches!(
            (self, transport),
            (Self::Both, _)
                | (Self::QuicOnly, TransportKind::Quic)
                | (Self::TcpOnly, TransportKind::Tls)
        )
    }
}

/// Which certificate a client offering the protocol's ALPN is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertificatePolicy {
    /// The node's Ed25519 certificate, which peers pin (the web certificate to
    /// a client that cannot verify Ed25519).
    NodeKey,
    /// The certificate browsers trust: the operator's when configured (see
    /// [`crate::tls`] for the full order).
    Web,
}

/// What the node needs to know about a protocol to advertise, route, name and
/// present certificates for it.
#[derive(Clone, Copy, Debug)]
pub struct Protocol {
    /// The ALPNs served, most preferred first (at least one). The first is the
    /// protocol's key: for `[protocols."<alpn>"]` overrides and in logs.
    pub alpns: &'static [&'static str],
    /// Where it is advertised.
    pub transports: Transports,
    /// The certificate its clients get.
    pub certificate: CertificatePolicy,
    /// The ALPN a TCP+TLS client that offers none is served as, if any
    /// (`docs/protocol.md` §2 rule 4). At most one protocol per node claims it.
    pub without_alpn: Option<&'static str>,
    /// Its supervisor is `proto/<name>`; defaults to the first ALPN.
    pub name: Option<&'static str>,
    /// Its connection actors' name; defaults to `<last part of name>-conn`.
    pub connection_name: Option<&'static str>,
    /// The QUIC application code a connection refused by admission is
    /// closed with: [`crate::close::REFUSED`] unless the protocol's own
    /// standard names one (DNS over QUIC: `DOQ_EXCESSIVE_LOAD`).
    pub refused_code: u32,
}

impl Protocol {
    /// A protocol on both transports, showing the node certificate, named
    /// after its first ALPN.
    pub const fn new(alpns: &'static [&'static str]) -> Self {
        Self {
            alpns,
            transports: Transports::Both,
            certificate: CertificatePolicy::NodeKey,
            without_alpn: None,
            name: None,
            connection_name: None,
            refused_code: crate::close::REFUSED,
        }
    }

    /// Advertised only on `transports`.
    pub const fn on(mut self, transports: Transports) -> Self {
        self.transports = transports;
        self
    }

    /// Clients get the web certificate.
    pub const fn web_certificate(mut self) -> Self {
        self.certificate = CertificatePolicy::Web;
        self
    }

    /// Serves TCP+TLS clients that offer no ALPN, as `alpn` (one of its own).
    pub const fn serving_clients_without_alpn_as(mut self, alpn: &'static str) -> Self {
        self.without_alpn = Some(alpn);
        self
    }

    /// Its tree name is `proto/<name>`.
    pub const fn named(mut self, name: &'static str) -> Self {
        self.name = Some(name);
        self
    }

    /// Its connection actors are called `name`.
    pub const fn connection_actors_named(mut self, name: &'static str) -> Self {
        self.connection_name = Some(name);
        self
    }

    /// Connections refused by admission are closed with `code`.
    pub const fn refusing_with(mut self, code: u32) -> Self {
        self.refused_code = code;
        self
    }

    /// The protocol's key: its first ALPN.
    pub fn primary_alpn(&self) -> &'static str {
        self.alpns.first().copied().unwrap_or("unnamed")
    }

    /// Its supervisor's name in the tree.
    pub fn tree_name(&self) -> String {
        format!("proto/{}", self.name.unwrap_or(self.primary_alpn()))
    }

    /// Its connection actors' name in the tree.
    pub fn connection_actor_name(&self) -> String {
        if let Some(name) = self.connection_name {
            return name.to_owned();
        }
        let name = self.name.unwrap_or(self.primary_alpn());
        let short = name.rsplit('/').next().unwrap_or(name);
        format!("{short}-conn")
    }
}

/// What a protocol crate implements to serve connections.
///
/// The node advertises the ALPNs of its registered handlers, routes each
/// negotiated connection to the handler of its ALPN, and runs `handle` inside
/// that connection's actor. When it returns, the connection actor stops and
/// the connection is closed. A panic inside `handle` stops that connection only.
pub trait ProtocolHandler: Send + Sync + 'static {
    /// The protocol's description.
    const PROTOCOL: Protocol;

    /// Runs one connection to its end. When the node shuts down,
    /// [`Connection::draining`] completes: finish the work in hand and return.
    fn handle(
        &self,
        connection: Connection,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Called once when the node shuts down, after its connections have been
    /// drained or closed: release what the protocol holds beyond them.
    fn shutdown(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// The object-safe form of [`ProtocolHandler`]: what [`ErasedHandler`] holds,
/// so that handlers write `async fn` and never box a future themselves.
trait DynProtocolHandler: Send + Sync + 'static {
    fn protocol(&self) -> Protocol;
    fn handle(
        self: Arc<Self>,
        connection: Connection,
    ) -> BoxFuture<'static, Result<(), HandlerError>>;
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}

impl<H: ProtocolHandler> DynProtocolHandler for H {
    fn protocol(&self) -> Protocol {
        H::PROTOCOL
    }

    fn handle(
        self: Arc<Self>,
        connection: Connection,
    ) -> BoxFuture<'static, Result<(), HandlerError>> {
        Box::pin(async move { ProtocolHandler::handle(&*self, connection).await })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(ProtocolHandler::shutdown(self))
    }
}

/// A registered handler of any protocol, as the node holds it. Cheap to clone.
#[derive(Clone)]
pub struct ErasedHandler(Arc<dyn DynProtocolHandler>);

impl ErasedHandler {
    /// Erases `handler`'s type.
    pub fn new(handler: impl ProtocolHandler) -> Self {
        Self(Arc::new(handler))
    }

    /// The protocol's description.
    pub fn protocol(&self) -> Protocol {
        self.0.protocol()
    }

    /// Runs one connection to its end (see [`ProtocolHandler::handle`]).
    pub fn handle(&self, connection: Connection) -> BoxFuture<'static, Result<(), HandlerError>> {
        self.0.clone().handle(connection)
    }

    /// See [`ProtocolHandler::shutdown`].
    pub fn shutdown(&self) -> BoxFuture<'_, ()> {
        self.0.shutdown()
    }
}

impl<H: ProtocolHandler> From<H> for ErasedHandler {
    fn from(handler: H) -> Self {
        Self::new(handler)
    }
}

impl std::fmt::Debug for ErasedHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ErasedHandler")
            .field(&self.protocol().alpns)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_default_to_the_first_alpn() {
        let echo = Protocol::new(&["alknet/echo"]);
        assert_eq!(echo.tree_name(), "proto/alknet/echo");
        assert_eq!(echo.connection_actor_name(), "echo-conn");
        let http = Protocol::new(&["h2", "http/1.1"]).named("http");
        assert_eq!(http.tree_name(), "proto/http");
        assert_eq!(http.connection_actor_name(), "http-conn");
        let call = Protocol::new(&["alknet/call"]).connection_actors_named("session");
        assert_eq!(call.connection_actor_name(), "session");
    }

    #[test]
    fn transports_say_where_a_protocol_is_advertised() {
        use TransportKind::{Quic, Tls};
        assert!(Transports::Both.includes(Quic) && Transports::Both.includes(Tls));
        assert!(Transports::QuicOnly.includes(Quic) && !Transports::QuicOnly.includes(Tls));
        assert!(Transports::TcpOnly.includes(Tls) && !Transports::TcpOnly.includes(Quic));
    }
}
